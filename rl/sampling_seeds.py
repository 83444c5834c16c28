"""The vLLM sampling seed of each generate call, fixed by the run's seed and the step: a resumed step, or the eval of a
step run again after a preemption, samples what the original would have."""
from __future__ import annotations

RUN_STRIDE = 1_000_003  # a prime: runs with nearby seeds get seeds far apart
# Rollouts and evals of the same step differ by their step stride, so an eval never replays the step's rollouts.
STEP_STRIDES = {"rollout": 7919, "eval": 1}


def sampling_seed(run_seed: int, step: int, purpose: str) -> int:
    """The seed of step `step`'s generate call for `purpose` ("rollout" or "eval")."""
    if purpose not in STEP_STRIDES:
        raise ValueError(f"sampling seed purpose must be one of {sorted(STEP_STRIDES)}, got {purpose!r}")
    return run_seed * RUN_STRIDE + STEP_STRIDES[purpose] * step
