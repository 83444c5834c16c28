"""Truncated importance sampling weights against hand-computed values."""
import math

import pytest
import torch

from rl.algo.importance import truncated_is_weights
from rl.algo.losses import clipped_policy_loss


def test_truncated_is_weights_hand_computed():
    # Ratios pi_trainer / pi_sampler: 0.5 / 0.25 = 2 (capped to 1.5), 0.9 / 0.9 = 1, 0.3 / 0.6 = 0.5; the last token is
    # padding (garbage logprob 50) -> weight 1 and left out of the stats.
    # ratio mean (2 + 1 + 0.5) / 3 = 1.1666667; max 2; capped 1/3; mean |diff| = (ln 2 + 0 + ln 2) / 3 = 0.4620981
    trainer = torch.tensor([[math.log(0.5), math.log(0.9)], [math.log(0.3), 50.0]], requires_grad=True)
    sampler = torch.tensor([[math.log(0.25), math.log(0.9)], [math.log(0.6), 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    weights, stats = truncated_is_weights(trainer, sampler, mask, cap=1.5)
    torch.testing.assert_close(weights, torch.tensor([[1.5, 1.0], [0.5, 1.0]]))
    assert not weights.requires_grad
    assert stats["tis_ratio_mean"] == pytest.approx(3.5 / 3, abs=1e-6)
    assert stats["tis_ratio_max"] == pytest.approx(2.0, abs=1e-6)
    assert stats["tis_capped_frac"] == pytest.approx(1 / 3)
    assert stats["tis_abs_logprob_diff_mean"] == pytest.approx(0.4620981, abs=1e-6)


def test_tis_weights_in_policy_loss():
    # First PPO epoch (logprobs == old): r = 1, per-token loss = -A. Token advantages [2, 1], TIS weights
    # 0.6 / 0.4 = 1.5 and 0.2 / 0.4 = 0.5: [-2 * 1.5, -1 * 0.5] = [-3, -0.5] -> token_mean -1.75 (unweighted: -1.5).
    trainer = torch.log(torch.tensor([[0.6, 0.2]]))
    sampler = torch.log(torch.tensor([[0.4, 0.4]]))  # ratios 1.5, 0.5
    mask = torch.ones(1, 2)
    weights, _ = truncated_is_weights(trainer, sampler, mask, cap=2.0)
    advantages = torch.tensor([[2.0, 1.0]])
    loss, _ = clipped_policy_loss(trainer, trainer, advantages, mask, 0.2, 0.2, "token_mean", is_weights=weights)
    torch.testing.assert_close(loss, torch.tensor(-1.75))


def test_truncated_is_rejects_bad_cap_and_shapes():
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), cap=0.0)
    with pytest.raises(ValueError, match="shape"):
        truncated_is_weights(torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1, 2), cap=2.0)
