"""Which training requests each RL step uses: a pure function of (seed, step), so resume needs no sampler state.

Epoch e is a permutation of the training set drawn from Random(seed, e); step s takes the next `per_step` items of the
concatenated epochs. A resumed run therefore sees exactly the data order of an uninterrupted one, also across an epoch
boundary: a resume at an epoch end still trains its remaining steps.
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
