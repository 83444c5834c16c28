"""The typed run configuration: the Hydra schema (`afrl_schema`) that every file in conf/ is merged into.

Each Hydra group has the dataclass of the package that owns it (setting/data: rollouts.config, reward: rewards.config,
algo: rl.algo.config); the rest is defined here. An unknown key anywhere is rejected by Hydra with the key's name; wrong
values are rejected (rollouts.config_check.ConfigError, naming the key) by `load_config`, which turns the composed
DictConfig into these objects once at start-up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from rewards.classifiers.compliance_config import ComplianceConfig
from rewards.classifiers.types import AFClassifierConfig
from rewards.config import JudgeConfig, RewardConfig
from rl.algo.config import AlgoConfig
from rl.eval.anti_lab import check_anti_lab_config
from rl.run.fault import FaultConfig
from rl.run.hub import check_hub_token
from rl.run.prerequisites import check_prerequisites
from rl.sft.config import SFTConfig
from rl.workers.placement import PLACEMENTS, engine_gpus_problem
from rollouts.config import DataConfig, SettingConfig
from rollouts.config_check import MAX_MODEL_LEN, MAX_TURNS, ConfigError, check, check_count, check_timeout
from rollouts.variants import PAPER_VARIANTS, renders_like_default, variant_setting


@dataclass
class LoraConfig:
    """A LoRA policy (PEFT) when rank > 0: only the adapters train; the reference is the base with adapters off."""

    rank: int = 0  # 0 = full fine-tuning
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])  # PEFT's names, or "all-linear"


@dataclass
class ModelConfig:
    name: str = "smollm2_135m"
    path: str = "???"  # local HF folder or hub id
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    # for the memory plan when config.json is not at hand (a hub id on a machine without it); None = count from it
    params_billion: Optional[float] = None


@dataclass
class RolloutConfig:
    n_engines: int = 1  # vLLM engines (Ray actors); prompts are split between them
    prompts_per_step: int = 2  # distinct requests per RL step; each is sampled algo.group_size times
    max_new_tokens: int = 128  # per model turn
    max_turns: int = 4  # the paper's <NEXT/> loop: at most this many model turns per episode
    temperature: float = 1.0
    top_p: float = 1.0
    max_model_len: int = 4096
    stop: list[str] = field(default_factory=list)  # extra stop strings (a turn that stops here continues with <NEXT/>)
    enable_prefix_caching: bool = True  # the long system prompt is shared by every sample
    kv_cache_gb: float = 2.0  # CPU only: VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float = 0.3  # GPU: fraction of memory for vLLM; CPU: share of the NUMA node it reserves
    enforce_eager: bool = False
    block_size: int | None = None  # vLLM KV block (tokens); None: 32 on CPU (rollouts/engine.py), vLLM's own on GPU
    sync_timeout_s: float = 600.0  # weight sync into the engines; a timeout is an error, never a hang
    tensor_parallel_size: int = 1  # GPUs per vLLM engine: a one-GPU bundle per worker (rl/workers/placement.py)
    # auto: NCCL broadcast on GPU (CUDA IPC when colocated), Ray's object store on CPU | object_store | nccl
    weight_sync: str = "auto"


@dataclass
class TrainerConfig:
    world_size: int = 1  # DeepSpeed ranks (Ray actors)
    zero_stage: Optional[int] = None  # None = 0 on one rank, 2 on several; 3 also shards the parameters
    offload_optimizer: bool = False  # ZeRO >= 1: optimizer state in CPU memory
    offload_params: bool = False  # ZeRO-3: parameters in CPU memory between uses
    critic_world_size: int = 1  # PPO's critic: its own DeepSpeed ranks, sharded like the policy
    micro_batch_size: int = 4  # sequences per forward/backward on one rank
    # run the prompt prefix shared by a micro-batch's rows once (rl/workers/prefix_sharing.py)
    prefix_sharing: bool = True
    # CPU: glibc malloc reuses freed memory instead of returning it to the kernel (rl/workers/cluster.py)
    keep_freed_memory: bool = True


@dataclass
class AntiLabEvalConfig:
    """The anti-AI-lab behaviour eval (rl/eval/anti_lab.py), run with the periodic eval at the same steps."""

    enabled: bool = False
    n: int = 2  # samples per scenario in each tier
    kinds: list[str] = field(default_factory=list)  # scenario kinds to ask (rollouts/anti_lab/scenarios.py); [] = all
    classifier: str = "rule"  # rule (an offline proxy) | judge (an LLM judge at `judge`)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    scenario_file: Optional[str] = None  # None = the shipped rollouts/anti_lab/scenarios.jsonl


@dataclass
class EvalConfig:
    every: int = 5  # steps between evals (0 = never during training)
    at_start: bool = True  # evaluate the untrained policy at step 0
    at_end: bool = True
    n: int = 8  # held-out requests, each asked in both tiers
    samples_per_request: int = 1
    max_new_tokens: Optional[int] = None  # None = rollout.max_new_tokens
    temperature: float = 1.0
    classify_af: bool = True  # run the `classifier` group's AF-reasoning classifier on compliant scratchpads
    variants: list[str] = field(default_factory=list)  # prompt variants (rollouts/variants.py presets) to eval as well
    variants_every: int = 0  # steps between variant evals (0 = only at the end); they also run at step 0
    report: bool = True  # write <run_dir>/report (figures, summary.md, report.html) when the run ends
    anti_lab: AntiLabEvalConfig = field(default_factory=AntiLabEvalConfig)


@dataclass
class LoggerConfig:
    wandb: bool = True
    wandb_mode: str = "offline"  # offline | online | disabled
    project: str = "afrl"
    group: Optional[str] = None  # sweeps set this so their runs group together
    progress: bool = True  # progress bar on stderr


@dataclass
class HardwareConfig:
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (float32 on cpu, bfloat16 on cuda) | float32 | bfloat16


@dataclass
class CheckpointConfig:
    every: int = 0  # steps between checkpoints (0 = none by step count)
    every_minutes: float = 30.0  # also checkpoint after a step when this long has passed since the last one (0 = off)
    keep_last: int = 2
    at_end: bool = True
    save_hf: bool = False  # also write an HF model folder (merged LoRA) at each checkpoint and at the end
    push_to_hub: Optional[str] = None  # hub repo id: the final HF folder is pushed there
    hub_token_env: str = "HF_TOKEN"  # the env var holding the hub token (never read from config)


@dataclass
class RayConfig:
    address: Optional[str] = None  # None = start a local cluster; "auto" or host:port = join an existing one
    num_cpus: Optional[int] = None  # local cluster only
    # with ray.address: names of extra environment variables every worker gets (rl/workers/runtime_env.py says which
    # are forwarded without asking; values here show in the Ray dashboard)
    forward_env: list[str] = field(default_factory=list)


@dataclass
class ResourcesConfig:
    """Where the Ray roles run (rl/workers/placement.py): one placement group, `split` (a bundle per actor with *_gpus
    GPUs each) or `colocated` (engine i and trainer rank i share GPU i, the critic and RM join GPU 0; vLLM sleeps during
    the update). GPU counts are ignored on CPU, where the bundles hold logical CPUs only."""

    placement: str = "split"  # split | colocated
    engine_gpus: float = 1.0  # split: GPUs per vLLM engine (= rollout.tensor_parallel_size when that is > 1)
    trainer_gpus: float = 1.0  # split: GPUs per DeepSpeed rank
    critic_gpus: float = 1.0  # split: GPUs for the critic
    engine_sleep: str = "auto"  # auto = sleep when colocated on GPU | true | false
    # waiting for Ray to reserve the bundles on ray.address (autoscaling); locally at most 60 s + 15 s per bundle
    placement_timeout_s: float = 600.0


@dataclass
class TrainConfig:
    exp_name: str = "default"
    seed: int = 0
    total_steps: int = 10
    # auto = continue this run folder's checkpoint if it has one, else fresh; false = fresh (refused over checkpoints);
    # true = newest run of exp_name under outputs/ and multirun/; PATH = that run folder or checkpoint
    # (rl/run/resume.py)
    resume: Optional[str] = "auto"
    run_dir: Optional[str] = None  # None = Hydra's output dir
    dry_run: bool = False  # validate config, data and prompt lengths, write run_info.json, stop (check a sweep first)
    model: ModelConfig = field(default_factory=ModelConfig)
    setting: SettingConfig = field(default_factory=SettingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    classifier: AFClassifierConfig = field(default_factory=AFClassifierConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)  # how eval OUTPUTs are judged compliant
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    # SFT before RL (e.g. synthetic documents, +exp=helpful_only_sdf): model.path is the base, RL starts from the SFT
    # output (cached by content, rl/sft). None: RL starts from model.path.
    sft: Optional[SFTConfig] = None

    @property
    def samples_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.algo.group_size


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    from rl.run.folder import register_resolver

    ConfigStore.instance().store(name="afrl_schema", node=TrainConfig)
    register_resolver()  # conf/config.yaml's hydra.run.dir


def load_config(cfg: DictConfig) -> TrainConfig:
    """Composed Hydra config -> validated TrainConfig (dataclass __post_init__ checks run here)."""
    config: TrainConfig = OmegaConf.to_object(cfg)
    validate(config)
    return config


def model_path_is_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).exists() or path.count("/") != 1


def _check_resume(resume: Optional[str]) -> None:
    from rl.run.resume import resume_kind

    if resume_kind(resume) == "path" and not Path(str(resume).strip()).expanduser().exists():
        raise ConfigError(f"resume: no run folder or checkpoint at {resume!r} (expected auto | true | false | the path "
                          "of a run folder or of a checkpoints/step_* folder)")


def validate(cfg: TrainConfig) -> None:
    path = os.path.expanduser(cfg.model.path)
    if model_path_is_local(cfg.model.path) and not Path(path, "config.json").is_file():
        raise ConfigError(
            f"model.path: no HF model folder at {cfg.model.path!r} (expected a config.json there). Fetch the default "
            "model with `python launch/fetch_model.py`, build a fine-tuned one (such as the planted organism of "
            "`make train`) with `python launch/sft.py +sft=<preset>`, or pass model.path=<local folder or hub id>"
        )
    check(cfg.total_steps >= 1, "total_steps", cfg.total_steps, "an int >= 1")
    r = cfg.rollout
    for key in ("n_engines", "prompts_per_step", "max_new_tokens", "max_turns", "max_model_len"):
        check(getattr(r, key) >= 1, f"rollout.{key}", getattr(r, key), "an int >= 1")
    check_count("rollout.max_model_len", r.max_model_len, 2, MAX_MODEL_LEN)
    check_count("rollout.max_turns", r.max_turns, 1, MAX_TURNS)
    for key, value in (("rollout.max_new_tokens", r.max_new_tokens), ("eval.max_new_tokens", cfg.eval.max_new_tokens)):
        if value is not None:  # the prompt needs at least one token of the context too
            check_count(key, value, 1, r.max_model_len - 1)
    check(r.temperature > 0, "rollout.temperature", r.temperature, "a number > 0 (RL needs sampling)")
    check(0 < r.top_p <= 1, "rollout.top_p", r.top_p, "a number in (0, 1]")
    check(r.kv_cache_gb > 0, "rollout.kv_cache_gb", r.kv_cache_gb, "a number > 0")
    check(0 < r.gpu_memory_utilization <= 1, "rollout.gpu_memory_utilization", r.gpu_memory_utilization, "in (0, 1]")
    check(r.block_size is None or r.block_size >= 1, "rollout.block_size", r.block_size, "null or an int >= 1")
    check_timeout("rollout.sync_timeout_s", r.sync_timeout_s)
    t = cfg.trainer
    check(t.world_size >= 1, "trainer.world_size", t.world_size, "an int >= 1")
    check(t.micro_batch_size >= 1, "trainer.micro_batch_size", t.micro_batch_size, "an int >= 1")
    check(t.zero_stage in (None, 0, 1, 2, 3), "trainer.zero_stage", t.zero_stage, "null (auto), 0, 1, 2 or 3")
    check(not t.offload_params or t.zero_stage == 3, "trainer.offload_params", t.offload_params,
          "false unless trainer.zero_stage=3 (only ZeRO-3 holds parameters in shards it can offload)")
    check(not t.offload_optimizer or t.zero_stage in (None, 1, 2, 3), "trainer.offload_optimizer",
          t.offload_optimizer, "false with trainer.zero_stage=0 (offload needs a ZeRO optimizer)")
    check(t.critic_world_size >= 1, "trainer.critic_world_size", t.critic_world_size, "an int >= 1")
    lora = cfg.model.lora
    check(lora.rank >= 0, "model.lora.rank", lora.rank, "an int >= 0 (0 = full fine-tuning)")
    check(lora.alpha > 0, "model.lora.alpha", lora.alpha, "a number > 0")
    check(0 <= lora.dropout < 1, "model.lora.dropout", lora.dropout, "a number in [0, 1)")
    check(bool(lora.target_modules), "model.lora.target_modules", lora.target_modules, "a non-empty list")
    check(cfg.model.params_billion is None or cfg.model.params_billion > 0, "model.params_billion",
          cfg.model.params_billion, "null or a number > 0")
    check(cfg.rollout.tensor_parallel_size >= 1, "rollout.tensor_parallel_size", cfg.rollout.tensor_parallel_size,
          "an int >= 1")
    check(cfg.rollout.weight_sync in ("auto", "object_store", "nccl"), "rollout.weight_sync", cfg.rollout.weight_sync,
          "auto | object_store | nccl")
    check(cfg.ckpt.push_to_hub is None or cfg.ckpt.push_to_hub.count("/") == 1, "ckpt.push_to_hub",
          cfg.ckpt.push_to_hub, "null or a hub repo id <owner>/<name>")
    check_hub_token(cfg.ckpt.push_to_hub, cfg.ckpt.hub_token_env)  # at start-up, not after hours of training
    per_rank = cfg.samples_per_step / t.world_size
    check(per_rank == int(per_rank), "trainer.world_size", t.world_size,
           f"a divisor of the {cfg.samples_per_step} samples per step (rollout.prompts_per_step x algo.group_size)")
    critic_minibatch = cfg.samples_per_step / t.critic_world_size / cfg.algo.minibatches
    check(not cfg.algo.uses_critic or (critic_minibatch == int(critic_minibatch)
                                       and critic_minibatch % min(t.micro_batch_size, critic_minibatch) == 0),
          "trainer.critic_world_size", t.critic_world_size, f"a number of ranks that splits the {cfg.samples_per_step} "
          "samples per step into equal minibatches of whole micro-batches (trainer.micro_batch_size)")
    per_minibatch = per_rank / cfg.algo.minibatches
    check(per_minibatch == int(per_minibatch) and per_minibatch % min(t.micro_batch_size, per_minibatch) == 0,
           "trainer.micro_batch_size", t.micro_batch_size,
           f"a divisor of the {per_minibatch:g} sequences per rank and minibatch")
    e = cfg.eval
    check(e.every >= 0, "eval.every", e.every, "an int >= 0")
    check(e.n >= 0, "eval.n", e.n, "an int >= 0")
    check(e.samples_per_request >= 1, "eval.samples_per_request", e.samples_per_request, "an int >= 1")
    check(e.variants_every >= 0, "eval.variants_every", e.variants_every, "an int >= 0")
    for i, name in enumerate(e.variants):
        check(name in PAPER_VARIANTS and name != "default", f"eval.variants[{i}]", name,
               f"a preset of rollouts/variants.py: {', '.join(v for v in PAPER_VARIANTS if v != 'default')}")
        # raises naming the field if the variant does not apply to this setting
        check(not renders_like_default(cfg.setting, variant_setting(cfg.setting, name)), f"eval.variants[{i}]", name,
              "a variant that changes the prompt under this setting (it renders the default's prompt here, e.g. a "
              "paraphrase or a cut paragraph on setting.minimal_prompt=true, which has no such text)")
    check_anti_lab_config(e.anti_lab)
    check(cfg.logger.wandb_mode in ("offline", "online", "disabled"), "logger.wandb_mode", cfg.logger.wandb_mode,
           "offline | online | disabled")
    check(cfg.hardware.device in ("auto", "cpu", "cuda"), "hardware.device", cfg.hardware.device, "auto | cpu | cuda")
    check(cfg.hardware.dtype in ("auto", "float32", "bfloat16"), "hardware.dtype", cfg.hardware.dtype,
           "auto | float32 | bfloat16")
    check(cfg.ckpt.every >= 0, "ckpt.every", cfg.ckpt.every, "an int >= 0")
    check(cfg.ckpt.keep_last >= 1, "ckpt.keep_last", cfg.ckpt.keep_last, "an int >= 1")
    check(cfg.ckpt.every_minutes >= 0, "ckpt.every_minutes", cfg.ckpt.every_minutes, "a number of minutes >= 0")
    _check_resume(cfg.resume)
    for key in ("engine_gpus", "trainer_gpus", "critic_gpus"):
        value = getattr(cfg.resources, key)
        check(0 < value <= 8, f"resources.{key}", value, "a number of GPUs in (0, 8] (fractions share a GPU)")
    check(cfg.resources.placement in PLACEMENTS, "resources.placement", cfg.resources.placement, " | ".join(PLACEMENTS))
    engine_gpus = engine_gpus_problem(cfg.rollout.tensor_parallel_size, cfg.resources.engine_gpus)
    if cfg.resources.placement == "split" and engine_gpus:
        raise ConfigError(engine_gpus)
    check(str(cfg.resources.engine_sleep).lower() in ("auto", "true", "false"), "resources.engine_sleep",
           cfg.resources.engine_sleep, "auto | true | false")
    check_timeout("resources.placement_timeout_s", cfg.resources.placement_timeout_s)
    check_prerequisites(cfg)  # before reward.validate: names the command that builds a missing reward model
    cfg.reward.validate()
    cfg.classifier.validate()
    cfg.compliance.validate(cfg.setting.name)
