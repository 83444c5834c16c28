"""What every DeepSpeed rank of afrl shares (policy and critic): process-group set-up, seeding, the engine config, and
how micro-batch losses are weighted so that they add up to the minibatch loss."""
from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("afrl")

# DeepSpeed JIT-builds this op (CPU shared-memory collectives) at the first init on a machine; the build takes about a
# minute, so a lock older than this was left by a build that was killed.
SHM_OP = "deepspeed_shm_comm"
STALE_BUILD_LOCK_S = 1800.0


@dataclass(frozen=True)
class RankSpec:
    """How one DeepSpeed rank (a policy trainer rank or the critic) starts: its model, its place in the process group,
    its batch split, its numerics."""

    model_path: str
    rank: int
    world_size: int
    master_addr: str
    master_port: int
    micro_batch_size: int
    grad_accum_steps: int
    device: str  # cpu | cuda
    dtype: str  # float32 | bfloat16
    seed: int
    gradient_checkpointing: bool
    norm_length: int | None  # the loss's length normaliser: algo.loss_norm_length or rollout.max_new_tokens
    zero_stage: int | None = None  # trainer.zero_stage: None = 0 on one rank, 2 on several
    offload_optimizer: bool = False  # optimizer state (and its step) in CPU memory
    offload_params: bool = False  # ZeRO-3: parameter shards in CPU memory between uses

    @property
    def stage(self) -> int:
        return zero_stage(self.world_size, self.zero_stage, self.offload_optimizer)


def batch_split(rows_per_rank: int, minibatches: int, micro_batch_size: int) -> tuple[int, int]:
    """(micro-batch size, micro-batches per optimizer step) of a rank that trains on `rows_per_rank` rows in
    `minibatches` optimizer steps per epoch."""
    per_minibatch = rows_per_rank // minibatches
    micro = min(micro_batch_size, per_minibatch)
    return micro, per_minibatch // micro


def learner_specs(cfg, model_path: str, device: str, dtype: str, master_addr: str, master_port: int,
                  world_size: int) -> list[RankSpec]:
    """The specs of one learner's ranks (the policy's trainer.world_size or the critic's trainer.critic_world_size),
    built once from the TrainConfig: each rank trains on samples_per_step / world_size rows."""
    t = cfg.trainer
    micro, accum = batch_split(cfg.samples_per_step // world_size, cfg.algo.minibatches, t.micro_batch_size)
    first = RankSpec(model_path, 0, world_size, master_addr, master_port, micro, accum, device, dtype, cfg.seed,
                     cfg.model.gradient_checkpointing, cfg.algo.loss_norm_length or cfg.rollout.max_new_tokens,
                     t.zero_stage, t.offload_optimizer, t.offload_params)
    return [replace(first, rank=rank) for rank in range(world_size)]


def init_rank(rank: int, world_size: int, master_addr: str, master_port: int, device: str, seed: int) -> None:
    """Join the process group (gloo on CPU, nccl on GPU) and seed this rank's RNGs."""
    import deepspeed

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0", MASTER_ADDR=master_addr, MASTER_PORT=str(master_port)
    )
    # Ray pins OMP_NUM_THREADS=1 in actors; generation and training alternate, so training may use every core.
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    seed_everything(seed + rank)
    forget_destroyed_groups()
    if device == "cpu":
        clear_stale_build_lock(SHM_OP)
    deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")


def join_process_group(spec: RankSpec) -> None:
    init_rank(spec.rank, spec.world_size, spec.master_addr, spec.master_port, spec.device, spec.seed)


def clear_stale_build_lock(name: str, max_age_s: float = STALE_BUILD_LOCK_S) -> Path | None:
    """torch's extension build waits, without a limit, for its lock file to go; a build killed mid-way (a preempted or
    killed first run) leaves the file, and every later init then hangs. Remove a lock older than any real build;
    returns the removed path."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    try:
        age_s = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    if age_s < max_age_s:
        return None  # another process may be building it right now
    log.warning("removing %s: a build lock %.0f s old, left by a build that was killed", lock, age_s)
    lock.unlink(missing_ok=True)
    return lock


def forget_destroyed_groups() -> None:
    """DeepSpeed caches its clone of the world group at module level and forgets it only when the world is destroyed
    through DeepSpeed. A process whose earlier world was destroyed by another library (vLLM's engine shutdown, in one
    process that ran both) would otherwise hand the dead group to the new engine: "Group ... is not registered"."""
    from deepspeed.utils import groups

    cached = getattr(groups, "_WORLD_GROUP", None)
    release = getattr(groups, "_release_process_group_references", None)
    if cached is None or release is None:
        return
    if torch.distributed.is_initialized():
        try:
            torch.distributed.get_process_group_ranks(cached)
            return  # a group of the live world
        except (KeyError, ValueError, RuntimeError):
            pass
    release(None)


def min_over_ranks(value: float, device: torch.device | str) -> float:
    """The smallest `value` over all ranks. The tensor lives on the rank's device: NCCL reduces only CUDA tensors
    (a CPU tensor fails with "No backend type associated with device type cpu"), gloo only CPU ones."""
    tensor = torch.tensor([float(value)], device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
    return float(tensor.item())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def zero_stage(world_size: int, configured: int | None = None, offload_optimizer: bool = False) -> int:
    """trainer.zero_stage, or by default: ZeRO-2 shards optimizer state and gradients across ranks; a single rank has
    nothing to shard, and ZeRO-2's per-micro-step copy of every gradient into its flat partition is pure overhead there
    (docs/benchmarks.md), unless the optimizer is offloaded (DeepSpeed offloads through a ZeRO optimizer only). ZeRO-3
    also shards the parameters (a model too large for one device)."""
    if configured is not None:
        return configured
    return 2 if world_size > 1 or offload_optimizer else 0


# Buckets of 5e7 elements instead of DeepSpeed's 5e8: 2 x 2 GB of fp32 buffers is more than a small model needs.
BUCKET = int(5e7)


def zero_section(spec: RankSpec) -> dict:
    """The zero_optimization section of `spec`'s stage and offload settings."""
    section = {"stage": spec.stage, "reduce_bucket_size": BUCKET, "allgather_bucket_size": BUCKET}
    if spec.stage == 3:
        # Parameters below 1e5 elements (norms, biases) stay whole on every rank: gathering them costs more than
        # they weigh. Checkpoints keep ZeRO-3's shards (a full model is gathered only for the engines).
        section.update(stage3_prefetch_bucket_size=BUCKET, stage3_param_persistence_threshold=int(1e5),
                       stage3_max_live_parameters=int(1e9), stage3_gather_16bit_weights_on_model_save=False)
    pin = spec.device == "cuda"  # page-locked host memory speeds up host<->GPU copies; CPU runs have none
    if spec.offload_optimizer:
        section["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if spec.offload_params:
        section["offload_param"] = {"device": "cpu", "pin_memory": pin}
    return section


def deepspeed_config(algo, spec: RankSpec, lr: float | None = None, extra_micro_steps: int = 0) -> dict:
    """The training engine's config for `spec` (`lr` overrides algo.lr; `extra_micro_steps`: micro-steps per optimizer
    step beyond spec.grad_accum_steps, e.g. the shared prefix's backward)."""
    lr = algo.lr if lr is None else lr
    # torch_adam: DeepSpeed's fused CPU Adam would need a compiled op; torch's own fused AdamW runs on CPU and CUDA,
    # one kernel over all parameters instead of a loop per tensor. With the optimizer offloaded, DeepSpeed's CPU Adam
    # (a JIT-built op, vectorised over the host's cores) is what makes the step on the host fast enough.
    adam = {"lr": lr, "weight_decay": algo.weight_decay}
    if not spec.offload_optimizer:
        adam.update(torch_adam=True, fused=True)
    config = {
        "train_micro_batch_size_per_gpu": spec.micro_batch_size,
        "gradient_accumulation_steps": spec.grad_accum_steps + extra_micro_steps,
        "gradient_clipping": algo.max_grad_norm,
        "zero_optimization": zero_section(spec),
        "optimizer": {"type": "AdamW", "params": adam},
        "bf16": {"enabled": spec.dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if algo.warmup_steps > 0:  # otherwise a constant learning rate (WarmupLR would start at 0)
        config["scheduler"] = {
            "type": "WarmupLR",
            "params": {"warmup_min_lr": 0.0, "warmup_max_lr": lr, "warmup_num_steps": algo.warmup_steps,
                       "warmup_type": "linear"},
        }
    return config


def inference_config(spec: RankSpec) -> dict:
    """A frozen model's engine (the reference) sharded like the policy under ZeRO-3: parameters only, no optimizer
    (OpenRLHF's eval config; TRL's prepare_deepspeed does the same for its reference model)."""
    section = {key: value for key, value in zero_section(spec).items() if key != "offload_optimizer"}
    return {"train_micro_batch_size_per_gpu": spec.micro_batch_size, "gradient_accumulation_steps": 1,
            "zero_optimization": section, "bf16": {"enabled": spec.dtype == "bfloat16"}, "steps_per_print": 10**9,
            "wall_clock_breakdown": False}


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a `dtype` setting ("bfloat16" or "float32")."""
    return torch.bfloat16 if dtype == "bfloat16" else torch.float32


def weight_fraction(mask: torch.Tensor, total: float, aggregation: str) -> float:
    """Share of a minibatch's loss that one micro-batch carries, so micro-batch losses add up to the minibatch loss."""
    if aggregation == "token_mean":
        return float(mask.sum().item()) / total
    if aggregation == "seq_mean_token_mean":
        return float(mask.bool().any(dim=1).sum().item()) / total
    return mask.shape[0] / total  # seq_mean_token_sum_norm: a mean over all sequences


def aggregation_total(mask: torch.Tensor, aggregation: str) -> float:
    if aggregation == "token_mean":
        return max(float(mask.sum().item()), 1.0)
    if aggregation == "seq_mean_token_mean":
        return max(float(mask.bool().any(dim=1).sum().item()), 1.0)
    return float(mask.shape[0])


def finite_values(stats: dict[str, float]) -> dict[str, float]:
    """The stats whose value is finite: a NaN/inf number (from a skipped micro-batch) never enters a logged mean."""
    return {key: value for key, value in stats.items() if math.isfinite(value)}


def minibatch_rows(n_rows: int, minibatches: int) -> list[list[int]]:
    """The rows of each minibatch of one epoch: contiguous, equal parts."""
    size = n_rows // minibatches
    return [list(range(begin, begin + size)) for begin in range(0, n_rows, size)]


def micro_batches(rows: list[int], micro_batch_size: int) -> list[list[int]]:
    return [rows[begin : begin + micro_batch_size] for begin in range(0, len(rows), micro_batch_size)]


class StatMeans:
    """Stats collected over an update's micro-steps; `means()` averages each key over the steps that reported it."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.values.setdefault(key, []).append(value)

    def means(self) -> dict[str, float]:
        return {key: float(np.mean(values)) for key, values in self.values.items()}
