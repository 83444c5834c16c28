"""What each RL step draws, as pure functions of (seed, step), so resume needs no sampler state: its training requests
(`step_indices`) and the sampling seed of its generate calls (`sampling_seed`).

Epoch e is a permutation of the training set drawn from Random(seed, e); step s takes the next `per_step` items of the
concatenated epochs. A resumed run therefore sees exactly the data order of an uninterrupted one, also across an epoch
boundary: a resume at an epoch end still trains its remaining steps.
A resumed step, or the eval of a step run again after a preemption, samples what the original would have.
"""
from __future__ import annotations

import random


def epoch_permutation(n_items: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n_items))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def step_indices(n_items: int, per_step: int, seed: int, step: int) -> list[int]:
    """Indices of the requests used at `step` (1-based)."""
    if n_items < 1:
        raise ValueError("the training split is empty: no requests to train on (check data.* and data.eval_fraction)")
    if step < 1:
        raise ValueError(f"steps are 1-based, got step={step}")
    cursor = (step - 1) * per_step
    indices = []
    for position in range(cursor, cursor + per_step):
        epoch, offset = divmod(position, n_items)
        indices.append(epoch_permutation(n_items, seed, epoch)[offset])
    return indices


def data_cursor(step: int, per_step: int) -> int:
    """Requests consumed after `step` steps (saved in checkpoints for inspection)."""
    return step * per_step


def passes_over_data(step: int, per_step: int, n_items: int) -> float:
    """Passes (epochs) over the training split after `step` steps: 1.0 when every request was trained on once."""
    return step * per_step / n_items if n_items else 0.0


# ---- sampling seeds --------------------------------------------------------------------------------------------------
RUN_STRIDE = 1_000_003  # a prime: runs with nearby seeds get seeds far apart
# Rollouts and evals of the same step differ by their step stride, so an eval never replays the step's rollouts.
STEP_STRIDES = {"rollout": 7919, "eval": 1}


def sampling_seed(run_seed: int, step: int, purpose: str) -> int:
    """The seed of step `step`'s generate call for `purpose` ("rollout" or "eval")."""
    if purpose not in STEP_STRIDES:
        raise ValueError(f"sampling seed purpose must be one of {sorted(STEP_STRIDES)}, got {purpose!r}")
    return run_seed * RUN_STRIDE + STEP_STRIDES[purpose] * step
