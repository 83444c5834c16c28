"""The sampling seeds (rl/run/data_order.py) equal the two formulas the loop and the eval used before they shared one
function: a run resumed across that change samples what it would have sampled."""
from __future__ import annotations

import pytest

from rl.run.data_order import sampling_seed


@pytest.mark.parametrize("run_seed", [0, 1, 2, 7, 42, 1234, 2**31 - 1])
def test_rollout_and_eval_seeds_equal_the_formulas_they_replace(run_seed):
    for step in range(0, 2001):
        assert sampling_seed(run_seed, step, "rollout") == run_seed * 1_000_003 + 7919 * step
        assert sampling_seed(run_seed, step, "eval") == run_seed * 1_000_003 + step


def test_an_unknown_purpose_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"sampling seed purpose must be one of \['eval', 'rollout'\], got 'train'"):
        sampling_seed(0, 1, "train")
