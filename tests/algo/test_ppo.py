"""PPO advantages (rl/algo/advantages.py) on numbers computed by hand."""
from __future__ import annotations

import torch

from rl.algo.advantages import gae_advantages


def test_score_on_last_token_kl_on_every_token_then_gae():
    # One response of 3 trained tokens after 1 prompt token; score 1.0; KL 0.1 per token, coef 0.5; V = 0.
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    values = torch.zeros(1, 4)
    kl = torch.tensor([[0.0, 0.1, 0.1, 0.1]])
    adv, returns = gae_advantages(torch.tensor([1.0]), values, mask, kl, kl_coef=0.5, gamma=1.0, lam=1.0,
                                  whiten_advantages=False)
    # token rewards: -0.05, -0.05, 1 - 0.05 = 0.95; with gamma = lam = 1 and V = 0 the advantage is the reward-to-go:
    # t3: 0.95; t2: -0.05 + 0.95 = 0.90; t1: -0.05 + 0.90 = 0.85.
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.85, 0.90, 0.95]]))
    torch.testing.assert_close(returns, adv)  # returns = advantages + values


def test_without_kl_and_with_values_and_whitening():
    mask = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[0.5, 0.25]])
    adv, returns = gae_advantages(torch.tensor([1.0]), values, mask, None, kl_coef=0.5, gamma=1.0, lam=0.5,
                                  whiten_advantages=False)
    # delta_2 = 1 - 0.25 = 0.75; delta_1 = 0 + 0.25 - 0.5 = -0.25; A_1 = -0.25 + 0.5 * 0.75 = 0.125.
    torch.testing.assert_close(adv, torch.tensor([[0.125, 0.75]]))
    torch.testing.assert_close(returns, torch.tensor([[0.625, 1.0]]))
    whitened, _ = gae_advantages(torch.tensor([1.0]), values, mask, None, 0.0, 1.0, 0.5, whiten_advantages=True)
    assert abs(float(whitened.mean())) < 1e-6
