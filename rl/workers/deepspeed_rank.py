"""What every DeepSpeed rank of afrl shares (policy and critic): process-group set-up, seeding, the engine config, and
how micro-batch losses are weighted so that they add up to the minibatch loss."""
from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass
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


def zero_stage(world_size: int) -> int:
    """ZeRO-2 shards optimizer state and gradients across ranks; a single rank has nothing to shard, and ZeRO-2's
    per-micro-step copy of every gradient into its flat partition is pure overhead there (docs/benchmarks.md)."""
    return 2 if world_size > 1 else 0


def deepspeed_config(algo, micro_batch_size: int, grad_accum_steps: int, dtype: str, world_size: int) -> dict:
    config = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum_steps,
        "gradient_clipping": algo.max_grad_norm,
        # Buckets of 5e7 elements instead of DeepSpeed's 5e8: 2 x 2 GB of fp32 buffers is more than a small model needs.
        "zero_optimization": {"stage": zero_stage(world_size), "reduce_bucket_size": int(5e7),
                              "allgather_bucket_size": int(5e7)},
        # torch_adam: DeepSpeed's fused CPU Adam would need a compiled op; torch's own fused AdamW runs on CPU and
        # CUDA, one kernel over all parameters instead of a loop per tensor.
        "optimizer": {"type": "AdamW", "params": {"lr": algo.lr, "weight_decay": algo.weight_decay, "torch_adam": True,
                                                  "fused": True}},
        "bf16": {"enabled": dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if algo.warmup_steps > 0:  # otherwise a constant learning rate (WarmupLR would start at 0)
        config["scheduler"] = {
            "type": "WarmupLR",
            "params": {"warmup_min_lr": 0.0, "warmup_max_lr": algo.lr, "warmup_num_steps": algo.warmup_steps,
                       "warmup_type": "linear"},
        }
    return config


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a `dtype` setting ("bfloat16" or "float32")."""
    return torch.bfloat16 if dtype == "bfloat16" else torch.float32


def start_engine(model: torch.nn.Module, config: dict):
    """(engine, scheduler, step gate) for `model`'s trainable parameters: its checkpoints load without unpickling
    (rl/workers/safe_load.py), and the gate skips an optimizer step whose loss or gradient is not finite
    (rl/workers/step_gate.py)."""
    import deepspeed

    from rl.workers.safe_load import use_safe_checkpoint_loading
    from rl.workers.step_gate import StepGate  # imports this module

    engine, _, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=config
    )
    use_safe_checkpoint_loading(engine)
    return engine, scheduler, StepGate(engine)


def save_engine(engine, directory: str | Path) -> None:
    """The engine's state (module, optimizer, scheduler) into `directory/deepspeed`."""
    engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False)


def load_engine(engine, directory: str | Path, what: str = "") -> None:
    """Load what `save_engine` wrote into `directory` (read with weights_only=True, rl/workers/safe_load.py);
    FileNotFoundError
    naming the folder when there is none (`what` names the model in the message, e.g. "critic ")."""
    path, _ = engine.load_checkpoint(
        str(directory), tag="deepspeed", load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise FileNotFoundError(f"no {what}DeepSpeed checkpoint under {directory}/deepspeed")


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


def run_update_schedule(loss_mask: torch.Tensor, algo, micro_batch_size: int, micro_step,
                        begin_minibatch=None, end_minibatch=None) -> dict[str, float]:
    """ppo_epochs x minibatches optimizer steps over the rows of a batch, each minibatch in micro-batches.

    `micro_step(rows, total)` runs one forward/backward on `rows`, `total` being its minibatch's aggregation count,
    and returns its stats; the result is the mean of every stat over all micro-steps. `begin_minibatch(rows)` and
    `end_minibatch()` (returning stats too), when given, run around each minibatch's micro-steps (the shared
    prefix's forward and backward).
    """
    n_rows = loss_mask.shape[0]
    minibatch_size = n_rows // algo.minibatches
    stats: dict[str, list[float]] = {}
    for _epoch in range(algo.ppo_epochs):
        for mb_start in range(0, n_rows, minibatch_size):
            mb_rows = list(range(mb_start, mb_start + minibatch_size))
            total = aggregation_total(loss_mask[mb_rows], algo.loss_aggregation)
            if begin_minibatch is not None:
                begin_minibatch(mb_rows)
            for micro_start in range(0, minibatch_size, micro_batch_size):
                for key, value in micro_step(mb_rows[micro_start : micro_start + micro_batch_size], total).items():
                    stats.setdefault(key, []).append(value)
            for key, value in (end_minibatch() if end_minibatch is not None else {}).items():
                stats.setdefault(key, []).append(value)
    return {key: float(np.mean(values)) for key, values in stats.items()}
