"""The GPU memory plan of a run: per role (policy ranks, reference, critic ranks, vLLM engines, reward model), the GPU
memory each of its GPUs holds and the fewest GPUs it needs. A pure function of the numbers below (no GPU, no download):
`python launch/train.py ... dry_run=true` prints it for any config, and the README's preset table is `preset_table()`.

Formulas (Ψ = trained parameters: the whole model, or the LoRA adapter; Φ = frozen parameters: the LoRA base, else 0;
w = bytes per weight: 2 in bf16, 4 in fp32; N = ranks of the DeepSpeed group; the ZeRO paper's accounting):
- weights (w(Ψ + Φ)): whole on every rank for ZeRO 0-2; ZeRO-3 keeps 1/N of them, or none with
  trainer.offload_params (CPU), plus the layers it gathers to compute with: at most ZERO3_LIVE_PARAMS parameters
  (DeepSpeed's stage3_max_live_parameters default).
- gradients (wΨ): whole for ZeRO 0-1, 1/N for ZeRO 2-3.
- Adam (KΨ): K = 12 bytes with bf16 weights (fp32 master copy, first and second moments), 8 with fp32 weights (the
  weights are the master); 1/N for ZeRO 1-3; none on the GPU with trainer.offload_optimizer (CPU).
- reference (wP, P = all parameters, when the KL penalty is on and there is no LoRA): a frozen copy on every policy
  rank, sharded 1/N (or offloaded) like the policy's weights under ZeRO-3. With LoRA the reference is the base with the
  adapter off: no copy.
- activations, the CUDA context, NCCL buffers and allocator fragmentation: not counted; HEADROOM (20%) of every
  training GPU is left for them (an assumption: long sequences need gradient checkpointing to stay inside it).
- vLLM engine: vLLM takes rollout.gpu_memory_utilization of each of its tensor_parallel_size GPUs; the weights (wP/TP)
  come out of that and the rest is KV cache (its own activations and CUDA graphs take a little of it). It fits when
  the KV cache holds one rollout.max_model_len sequence (vLLM's own start-up check): 2 x layers x kv_heads x head_dim
  x w bytes per token from the shape, or MIN_KV_GB when only model.params_billion is known.
- critic: counted like the policy (its own trainer.critic_world_size ranks, the same ZeRO settings and LoRA), with
  no reference.
- colocated placement: a training rank shares its GPU with an engine, so it has the usable memory minus the engine's
  reservation. Each role is checked on its own: the critic and the reward model also sit on GPU 0 there, so leave
  room for them.
- reward model: its weights (reward.rm.dtype) on reward.rm.num_gpus (CPU when 0).
GB here are 10^9 bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional

from rl.workers.model_size import ModelSize, ModelSizeError, model_size

if TYPE_CHECKING:
    from rl.config import TrainConfig

GB = 1e9
HEADROOM = 0.2
ZERO3_LIVE_PARAMS = 1e9
MIN_KV_GB = 4.0
TP_SIZES = (1, 2, 4, 8)
MAX_RANKS = 4096
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Learner:
    """A DeepSpeed group (the policy's ranks or the critic's)."""

    ranks: int
    zero_stage: int
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass(frozen=True)
class PlanInputs:
    size: ModelSize
    policy: Learner
    critic: Optional[Learner] = None  # PPO only
    reference: bool = True  # algo.uses_reference
    n_engines: int = 1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 4096
    weight_bytes: int = 2
    colocated: bool = False
    reward_model: Optional[ModelSize] = None
    reward_model_bytes: int = 4
    reward_model_gpus: float = 0.0
    gpu_gb: float = 80.0
    headroom: float = HEADROOM

    @property
    def usable_gb(self) -> float:
        return self.gpu_gb * (1 - self.headroom)

    @property
    def engine_gb(self) -> float:
        return self.gpu_memory_utilization * self.gpu_gb

    @property
    def learner_gb(self) -> float:
        """What one training rank may hold: less the engine's reservation when the two share a GPU."""
        return self.usable_gb - (self.engine_gb if self.colocated else 0.0)


@dataclass(frozen=True)
class RoleMemory:
    role: str
    gpus: float  # GPUs of its own as configured (0: it shares the policy ranks' GPUs, or runs on CPU)
    parts: dict[str, float]  # GB per GPU, by part
    fits: bool
    fewest_gpus: Optional[int]  # ranks (or an engine's TP) at which it fits; None: at no count with these settings
    note: str = ""  # what it is checked against
    counted_in: str = "ranks"  # what fewest_gpus counts: ranks | TP (an engine's GPUs) | GPU

    @property
    def gb(self) -> float:
        return sum(self.parts.values())


@dataclass(frozen=True)
class MemoryPlan:
    inputs: PlanInputs
    roles: tuple[RoleMemory, ...]
    total_gpus: int
    notes: tuple[str, ...] = ()  # what the plan could not count

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.roles)

    def describe(self) -> str:
        i = self.inputs
        lines = [f"memory plan: {i.size.params / 1e9:.2f}B parameters ({i.size.source})"
                 + (f", LoRA adapter {i.size.adapter_params / 1e6:.1f}M" if i.size.adapter_params else "")
                 + f", {i.weight_bytes}-byte weights, {i.gpu_gb:g} GB GPUs ({i.headroom:.0%} of a training GPU left "
                 f"for activations); {self.total_gpus} GPU(s) in all"]
        for r in self.roles:
            parts = ", ".join(f"{name} {gb:.1f}" for name, gb in r.parts.items() if gb)
            fewest = ("never fits with these settings" if r.fewest_gpus is None
                      else f"fits from TP {r.fewest_gpus}" if r.counted_in == "TP"
                      else f"fits from {r.fewest_gpus} {r.counted_in}")
            lines.append(f"  {r.role}: {r.gpus:g} GPU(s), {r.gb:.1f} GB per GPU ({parts or 'nothing'}); {fewest}; "
                         f"{'fits' if r.fits else 'DOES NOT FIT'}" + (f" ({r.note})" if r.note else ""))
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])

    def as_dict(self) -> dict:
        return {"fits": self.fits, "total_gpus": self.total_gpus, "gpu_gb": self.inputs.gpu_gb,
                "params": self.inputs.size.params, "adapter_params": self.inputs.size.adapter_params,
                "source": self.inputs.size.source,
                "roles": [{"role": r.role, "gpus": r.gpus, "gb_per_gpu": round(r.gb, 3), "fits": r.fits,
                           "fewest_gpus": r.fewest_gpus, "parts_gb": {k: round(v, 3) for k, v in r.parts.items()}}
                          for r in self.roles], "notes": list(self.notes)}


# ---- the formulas ----------------------------------------------------------------------------------------------------
def learner_parts(trained: int, frozen: int, w: int, group: Learner, reference_params: int = 0) -> dict[str, float]:
    """GB per rank of a DeepSpeed group (see the module docstring); `reference_params` > 0 adds a frozen copy."""
    n, stage = group.ranks, group.zero_stage
    adam_bytes = 12 if w == 2 else 8
    total = trained + frozen
    resident = 0 if (stage == 3 and group.offload_params) else total / n if stage == 3 else total
    parts = {"weights": resident * w / GB}
    if stage == 3:
        parts["gathered layers"] = min(total - resident, ZERO3_LIVE_PARAMS) * w / GB
    parts["gradients"] = trained * w / (n if stage >= 2 else 1) / GB
    parts["Adam"] = 0.0 if group.offload_optimizer else trained * adam_bytes / (n if stage >= 1 else 1) / GB
    if reference_params:
        ref = 0 if (stage == 3 and group.offload_params) else reference_params / n if stage == 3 else reference_params
        parts["reference"] = ref * w / GB
    return parts


def fewest_ranks(fits_with) -> Optional[int]:
    """The smallest rank count for which `fits_with(n)` holds, None if none up to MAX_RANKS."""
    if not fits_with(MAX_RANKS):
        return None
    low, high = 1, MAX_RANKS  # the memory per rank only falls as ranks are added: bisect
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if fits_with(mid) else (mid + 1, high)
    return low


def learner_role(name: str, inputs: PlanInputs, group: Learner, with_reference: bool) -> RoleMemory:
    size, w = inputs.size, inputs.weight_bytes
    frozen = size.params if size.adapter_params else 0
    reference = size.params if with_reference and not size.adapter_params else 0

    def parts(n: int) -> dict[str, float]:
        return learner_parts(size.trained_params, frozen, w, Learner(n, group.zero_stage, group.offload_optimizer,
                                                                       group.offload_params), reference)

    limit = inputs.learner_gb
    fewest = fewest_ranks(lambda n: sum(parts(n).values()) <= limit)
    held = parts(group.ranks)
    note = f"limit {limit:.1f} GB per rank" + (", with its frozen reference copy" if reference else "")
    return RoleMemory(name, 0 if inputs.colocated else group.ranks, held, sum(held.values()) <= limit, fewest, note)


def engine_role(inputs: PlanInputs) -> RoleMemory:
    size, w = inputs.size, inputs.weight_bytes
    needed_kv_gb = (inputs.max_model_len * size.shape.kv_bytes_per_token(w) / GB if size.shape else MIN_KV_GB)

    def kv_gb(tp: int) -> float:
        return inputs.engine_gb - size.params * w / tp / GB

    fewest = next((tp for tp in TP_SIZES if kv_gb(tp) * tp >= needed_kv_gb), None)
    tp = inputs.tensor_parallel_size
    parts = {"weights": size.params * w / tp / GB, "KV cache": max(0.0, kv_gb(tp))}
    note = (f"gpu_memory_utilization {inputs.gpu_memory_utilization:g}; the KV cache needs {needed_kv_gb:.1f} GB per "
            f"engine, has {max(0.0, kv_gb(tp)) * tp:.1f}")
    return RoleMemory(f"vLLM engines ({inputs.n_engines} x TP {tp})", 0 if inputs.colocated else inputs.n_engines * tp,
                      parts, kv_gb(tp) * tp >= needed_kv_gb, fewest, note, "TP")


def reward_model_role(inputs: PlanInputs) -> RoleMemory:
    rm = inputs.reward_model
    gb = rm.params * inputs.reward_model_bytes / GB
    what = f"{rm.params / 1e9:.2f}B parameters, {rm.source}"
    if not inputs.reward_model_gpus:
        return RoleMemory("reward model", 0, {}, True, 0, f"on CPU (reward.rm.num_gpus=0): {gb:.1f} GB of RAM; {what}",
                          "GPU")
    limit = inputs.usable_gb * min(1.0, inputs.reward_model_gpus)  # a fraction shares its GPU
    return RoleMemory("reward model", inputs.reward_model_gpus, {"weights": gb}, gb <= limit,
                      1 if gb <= inputs.usable_gb else None, f"limit {limit:.1f} GB; {what}", "GPU")


def plan_memory(inputs: PlanInputs) -> MemoryPlan:
    roles = [learner_role(f"policy ranks (ZeRO-{inputs.policy.zero_stage})", inputs, inputs.policy, inputs.reference)]
    if inputs.critic is not None:
        roles.append(learner_role(f"critic ranks (ZeRO-{inputs.critic.zero_stage})", inputs, inputs.critic, False))
    roles.append(engine_role(inputs))
    if inputs.reward_model is not None:
        roles.append(reward_model_role(inputs))
    if inputs.colocated:
        total = max(inputs.n_engines * inputs.tensor_parallel_size, inputs.policy.ranks)
    else:
        total = int(sum(r.gpus for r in roles if r.role != "reward model")) + math.ceil(inputs.reward_model_gpus)
    return MemoryPlan(inputs, tuple(roles), total)


# ---- a run's config -> its plan --------------------------------------------------------------------------------------
def resolved_zero_stage(zero_stage: Optional[int], ranks: int) -> int:
    """trainer.zero_stage=null: 0 on one rank, 2 on several (rl/config.py)."""
    return zero_stage if zero_stage is not None else (0 if ranks == 1 else 2)


def default_gpu_gb() -> float:
    """This machine's first GPU, else 80 GB (an A100/H100): the plan is for the GPUs a run will get."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory / GB if torch.cuda.is_available() else 80.0


def plan_for_config(cfg: "TrainConfig", gpu_gb: Optional[float] = None) -> MemoryPlan:
    """The plan of a validated config on GPUs of `gpu_gb` (default: `default_gpu_gb()`). Weights are bf16 unless
    hardware.dtype=float32. Raises ModelSizeError naming model.params_billion when the size cannot be counted."""
    t, lora = cfg.trainer, cfg.model.lora
    size = model_size(cfg.model.path, cfg.model.params_billion, lora.rank, tuple(lora.target_modules))
    notes, reward_model = [], None
    if "rm" in cfg.reward.used_components:
        try:
            reward_model = model_size(cfg.reward.rm.model_path, None, what="reward.rm")
        except ModelSizeError as error:
            notes.append(f"reward model not counted: {error}")
    critic = None
    if cfg.algo.uses_critic:
        critic = Learner(t.critic_world_size, resolved_zero_stage(t.zero_stage, t.critic_world_size),
                         t.offload_optimizer, t.offload_params)
    inputs = PlanInputs(
        size, Learner(t.world_size, resolved_zero_stage(t.zero_stage, t.world_size), t.offload_optimizer,
                      t.offload_params),
        critic, cfg.algo.uses_reference, cfg.rollout.n_engines, cfg.rollout.tensor_parallel_size,
        cfg.rollout.gpu_memory_utilization, cfg.rollout.max_model_len,
        weight_bytes=4 if cfg.hardware.dtype == "float32" else 2, colocated=cfg.resources.placement == "colocated",
        reward_model=reward_model, reward_model_bytes=DTYPE_BYTES[cfg.reward.rm.dtype],
        reward_model_gpus=cfg.reward.rm.num_gpus, gpu_gb=gpu_gb if gpu_gb is not None else default_gpu_gb(),
    )
    return replace(plan_memory(inputs), notes=tuple(notes))


def config_plan_report(cfg: "TrainConfig") -> tuple[dict, str]:
    """(run_info.json's `memory_plan`, the text a dry run prints) for a config; without a countable size, the reason
    (naming model.params_billion) in both."""
    try:
        plan = plan_for_config(cfg)
    except ModelSizeError as error:
        return {"error": str(error)}, f"memory plan: none ({error})"
    return plan.as_dict(), plan.describe()
