"""Typed configuration of launch/bench.py (Hydra schema `bench_schema`; YAML in conf/bench/)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rollouts.config_check import check

SIDES = ("afrl", "trl")


@dataclass
class WorkloadConfig:
    name: str = "short"
    prompts_per_step: int = 2  # distinct requests per step
    samples_per_prompt: int = 4  # GRPO group size
    max_new_tokens: int = 64
    few_shot_examples: bool = False  # true = the paper-length system prompt (>= 3k tokens)
    max_model_len: int = 4096  # vLLM context: prompt + max_new_tokens must fit


@dataclass
class BenchHardwareConfig:
    device: str = "cpu"  # cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16
    model_path: str = "???"
    sides: list[str] = field(default_factory=lambda: list(SIDES))  # which frameworks run (gpu: afrl only)
    rollout_backend: str = "vllm"  # vllm | hf (HF generate in a Ray actor) | auto (vllm when importable, else hf)
    peak_tflops: Optional[float] = None  # the card's dense peak for MFU; None = looked up from the device name


@dataclass
class BenchConfig:
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    hardware: BenchHardwareConfig = field(default_factory=BenchHardwareConfig)
    warmup_steps: int = 1  # per side, not timed
    steps: int = 2  # timed steps per side, alternating TRL / afrl
    lr: float = 1.0e-6
    kl_coef: float = 0.0  # the same for both sides (0 = no reference model in either)
    temperature: float = 1.0
    seed: int = 0
    json_path: str = "outputs/bench/bench.json"
    prefix_row: bool = True  # also time plain vs prefix-shared forward+backward on afrl's last batch
    prefix_reps: int = 1
    matmul_seconds: float = 2.0  # how long to measure the fp32 matmul rate
    rss_interval_s: float = 0.5
    afrl_overrides: list[str] = field(default_factory=list)  # extra Hydra overrides for afrl's TrainConfig
    # TRL's per-device batch (gradient accumulation makes up the step); None = afrl's trainer.micro_batch_size.
    # Lower it when TRL's plain forward of long prompts does not fit beside afrl (workload=paper: 1).
    trl_micro_batch_size: Optional[int] = None
    # true: TRL and afrl steps alternate (load drift hits both alike), both frameworks resident at once. false: TRL's
    # steps, then afrl's, one framework in memory at a time (workload=paper: both at once do not fit in 24 GiB).
    alternate: bool = True
    work_dir: str = "outputs/bench/work"  # TRL output_dir and afrl's run folder


def validate_bench(cfg: BenchConfig) -> None:
    w = cfg.workload
    for key in ("prompts_per_step", "samples_per_prompt", "max_new_tokens", "max_model_len"):
        check(getattr(w, key) >= 1, f"workload.{key}", getattr(w, key), "an int >= 1")
    check(cfg.hardware.device in ("cpu", "cuda"), "hardware.device", cfg.hardware.device, "cpu | cuda")
    check(cfg.hardware.dtype in ("float32", "bfloat16"), "hardware.dtype", cfg.hardware.dtype, "float32 | bfloat16")
    check(bool(cfg.hardware.sides) and set(cfg.hardware.sides) <= set(SIDES), "hardware.sides", cfg.hardware.sides,
          f"a non-empty subset of {list(SIDES)}")
    check(cfg.hardware.rollout_backend in ("vllm", "hf", "auto"), "hardware.rollout_backend",
          cfg.hardware.rollout_backend, "vllm | hf | auto")
    check(cfg.warmup_steps >= 0, "warmup_steps", cfg.warmup_steps, "an int >= 0")
    check(cfg.steps >= 1, "steps", cfg.steps, "an int >= 1")
    check(cfg.trl_micro_batch_size is None or cfg.trl_micro_batch_size >= 1, "trl_micro_batch_size",
          cfg.trl_micro_batch_size, "null or an int >= 1")
    check(cfg.lr > 0, "lr", cfg.lr, "a number > 0")
    check(cfg.kl_coef >= 0, "kl_coef", cfg.kl_coef, "a number >= 0")
    check(cfg.temperature > 0, "temperature", cfg.temperature, "a number > 0")
    check(cfg.prefix_reps >= 1, "prefix_reps", cfg.prefix_reps, "an int >= 1")
    check(cfg.matmul_seconds > 0, "matmul_seconds", cfg.matmul_seconds, "a number > 0")
