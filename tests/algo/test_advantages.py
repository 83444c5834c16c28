"""Advantage estimators against hand-computed values (derivations in the comments)."""
import pytest
import torch

from rl.algo.advantages import gae, group_advantages, rloo_advantages, terminal_reward_to_tokens, whiten


def test_group_advantages_grpo_zscore_within_each_group():
    # Group 1 = [1, 0, 0, 0]: mean 0.25, population var = (0.75^2 + 3 * 0.25^2) / 4 = 0.1875, std = 0.4330127
    #   -> 0.75 / 0.4330127 = 1.7320508, -0.25 / 0.4330127 = -0.5773503.
    # Group 2 = [2, 2, 2, 2]: all equal -> 0 (no signal, no nan).
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    expected = torch.tensor([1.7320508, -0.5773503, -0.5773503, -0.5773503, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(rewards, group_size=4), expected, atol=1e-5, rtol=0)


def test_group_advantages_dr_grpo_only_centres():
    # Dr. GRPO: r - mean(group); group 1 mean 0.25, group 2 mean 2 (K = 2: [1, 3] -> mean 2 -> [-1, 1]).
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 3.0, 2.0, 2.0])
    adv = group_advantages(rewards, group_size=4, scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25, -1.0, 1.0, 0.0, 0.0]))


def test_rloo_leave_one_out_baseline():
    # [1, 0, 0, 0]: A_0 = 1 - mean(0, 0, 0) = 1; A_1 = 0 - mean(1, 0, 0) = -1/3.
    # [3, 1] (K = 2): A_0 = 3 - 1 = 2; A_1 = 1 - 3 = -2.
    adv = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4)
    torch.testing.assert_close(adv, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))
    torch.testing.assert_close(rloo_advantages(torch.tensor([3.0, 1.0]), 2), torch.tensor([2.0, -2.0]))


def test_outcome_advantages_reject_bad_layout():
    with pytest.raises(ValueError, match="group_size=4"):
        group_advantages(torch.zeros(6), group_size=4)
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(torch.zeros(4), group_size=1)
    with pytest.raises(ValueError, match="flat"):
        group_advantages(torch.zeros(2, 4), group_size=4)


def test_terminal_reward_lands_on_last_trained_token():
    # Row 0 right-padded (last trained = position 1), row 1 left-padded (position 2), row 2 has a hole (position 2).
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    rewards = terminal_reward_to_tokens(torch.tensor([2.0, -1.0, 0.5]), mask)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.5]]))


def test_terminal_reward_rejects_row_without_trained_token():
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        terminal_reward_to_tokens(torch.tensor([1.0, 1.0]), torch.tensor([[1, 0], [0, 0]]))


def test_gae_contiguous_row():
    # gamma = 1, lam = 0.5, rewards [0, 0, 1], values [0.5, 0.6, 0.7], last token terminal:
    # t=2: delta = 1 - 0.7 = 0.3, A = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1, A = 0.1 + 0.5 * 0.3 = 0.25
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1, A = 0.1 + 0.5 * 0.25 = 0.225
    # returns = A + V = [0.725, 0.85, 1.0]
    adv, ret = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.ones(1, 3), 1.0, 0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(ret, torch.tensor([[0.725, 0.85, 1.0]]))


def test_gae_skips_untrained_positions_and_padding():
    # Row 0: mask [1, 0, 1, 0]: position 1 is a user turn (value 9 is garbage and must be ignored), position 3 is
    # padding. gamma = 0.9, lam = 1:
    # t=2: delta = 1 - 0.7 = 0.3, A = 0.3
    # t=0: next trained token is t=2: delta = 0 + 0.9 * 0.7 - 0.5 = 0.13, A = 0.13 + 0.9 * 1 * 0.3 = 0.4
    #      (lam = 1 check: discounted return 0.9 * 1 minus V_0 = 0.9 - 0.5 = 0.4)
    # returns = [0.9, 0, 1.0, 0]
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 9.0, 0.7, 5.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.4, 0.0, 0.3, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.9, 0.0, 1.0, 0.0]]))


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), 1.0, 0.95)


def test_whiten_over_trained_entries():
    # Trained x = [1, 2, 3]: mean 2, population var 2/3, 1 / sqrt(2/3) = 1.2247449 -> [-1.2247449, 0, 1.2247449];
    # the padded 100 is ignored and comes out 0. shift_mean=False adds the mean back: [0.7752551, 2, 3.2247449].
    x = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    torch.testing.assert_close(whiten(x, mask), torch.tensor([[-1.2247449, 0.0], [1.2247449, 0.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        whiten(x, mask, shift_mean=False), torch.tensor([[0.7752551, 2.0], [3.2247449, 0.0]]), atol=1e-5, rtol=0
    )
