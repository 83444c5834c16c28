"""Loss functions against hand-computed values (derivations in the comments)."""
import math

import pytest
import torch

from rl.algo.losses import (
    aggregate_token_loss, clipped_policy_loss, clipped_value_loss, entropy_from_logits, masked_mean, masked_sum,
)


def test_masked_mean_and_sum():
    # Selected: 1, 3, 4 -> sum 8, mean 8/3; per row: [1] -> 1, [3, 4] -> 3.5. The masked inf never shows up.
    x = torch.tensor([[1.0, float("inf")], [3.0, 4.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert masked_sum(x, mask).item() == 8.0
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor(8 / 3))
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.0, 3.5]))


def test_masked_mean_of_nothing_is_zero_with_finite_gradient():
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = masked_mean(x, torch.zeros(1, 2))
    out.backward()
    assert out.item() == 0.0 and x.grad.tolist() == [[0.0, 0.0]]


LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    "mode, norm_length, expected",
    [
        ("token_mean", None, 2.5),  # (1 + 2 + 3 + 4) / 4 tokens
        ("seq_mean_token_mean", None, 3.0),  # (mean(1, 2, 3) = 2, mean(4) = 4) -> (2 + 4) / 2
        ("seq_mean_token_sum_norm", 4, 1.25),  # (6 / 4 + 4 / 4) / 2 sequences
        ("seq_mean_token_sum_norm", None, 5 / 3),  # constant = T = 3: (6 / 3 + 4 / 3) / 2 = 10 / 6
    ],
)
def test_aggregation_modes(mode, norm_length, expected):
    torch.testing.assert_close(aggregate_token_loss(LOSS, MASK, mode, norm_length), torch.tensor(expected))


def test_seq_mean_skips_sequences_without_trained_tokens():
    # Row 1 has no trained token: the GRPO mean is over row 0 only: mean(1, 2) = 1.5.
    loss = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    out = aggregate_token_loss(loss, torch.tensor([[1, 1], [0, 0]]), "seq_mean_token_mean")
    torch.testing.assert_close(out, torch.tensor(1.5))


def test_unknown_aggregation_names_the_mode():
    with pytest.raises(ValueError, match="'seq_sum'"):
        aggregate_token_loss(LOSS, MASK, "seq_sum")


# Ratios r = exp(logprobs - old) with old = 0, advantages [1, -2] per sequence, clip 0.2 / 0.2:
# (0,0) A=1,  r=1.5: unclipped -1.5, clipped -1.2 -> max = -1.2 (clipped term active, no gradient)
# (0,1) A=1,  r=0.5: unclipped -0.5, clipped -0.8 -> -0.5
# (1,0) A=-2, r=1.0: 2 and 2 -> 2
# (1,1) A=-2, r=1.1: 2.2 and 2.2 -> 2.2
# token_mean = (-1.2 - 0.5 + 2 + 2.2) / 4 = 0.625; clip_frac = 1/4; ratio_mean = 4.1 / 4 = 1.025
# approx_kl = mean(r - 1 - ln r) = (0.0945349 + 0.1931472 + 0 + 0.0046898) / 4 = 0.0730930
RATIOS = torch.tensor([[1.5, 0.5], [1.0, 1.1]])
ADVANTAGES = torch.tensor([1.0, -2.0])


def test_clipped_policy_loss_hand_computed():
    logprobs = RATIOS.log().requires_grad_()
    loss, stats = clipped_policy_loss(logprobs, torch.zeros(2, 2), ADVANTAGES, torch.ones(2, 2), 0.2, 0.2, "token_mean")
    torch.testing.assert_close(loss, torch.tensor(0.625))
    assert stats["clip_frac"] == pytest.approx(0.25)
    assert stats["ratio_mean"] == pytest.approx(1.025)
    assert stats["approx_kl"] == pytest.approx(0.0730930, abs=1e-6)
    # d loss / d logprob = -A * r / 4 on unclipped tokens, 0 on the clipped one:
    # (0,0): 0; (0,1): -1 * 0.5 / 4 = -0.125; (1,0): 2 * 1 / 4 = 0.5; (1,1): 2 * 1.1 / 4 = 0.55
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.125], [0.5, 0.55]]))


def test_clip_higher_lets_positive_advantage_ratios_grow():
    # DAPO clip_high = 0.6: token (0,0) r = 1.5 < 1.6 is no longer clipped -> -1.5.
    # loss = (-1.5 - 0.5 + 2 + 2.2) / 4 = 0.55, clip_frac = 0.
    loss, stats = clipped_policy_loss(RATIOS.log(), torch.zeros(2, 2), ADVANTAGES, torch.ones(2, 2), 0.2, 0.6, "token_mean")
    torch.testing.assert_close(loss, torch.tensor(0.55))
    assert stats["clip_frac"] == 0.0


def test_clip_low_bounds_negative_advantage_ratios():
    # A = -1, r = 0.5, clip_low 0.2: unclipped 0.5, clipped -(-1) * 0.8 = 0.8 -> 0.8 (clipped term active).
    loss, stats = clipped_policy_loss(
        torch.tensor([[math.log(0.5)]]), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), 0.2, 0.2, "token_mean"
    )
    torch.testing.assert_close(loss, torch.tensor(0.8))
    assert stats["clip_frac"] == 1.0


def test_is_weights_scale_each_token():
    # Weights [[2, 1], [1, 0.5]] on the per-token losses [-1.2, -0.5, 2, 2.2] -> [-2.4, -0.5, 2, 1.1], mean 0.2 / 4 = 0.05.
    weights = torch.tensor([[2.0, 1.0], [1.0, 0.5]])
    loss, _ = clipped_policy_loss(
        RATIOS.log(), torch.zeros(2, 2), ADVANTAGES, torch.ones(2, 2), 0.2, 0.2, "token_mean", is_weights=weights
    )
    torch.testing.assert_close(loss, torch.tensor(0.05))


def test_token_level_advantages_and_masked_garbage():
    # [B, T] advantages; position (0,1) is padding holding logprob 100 (exp overflows): it must not reach the loss or
    # the gradient. Trained: (0,0) A=1, r=1.5 -> -1.2; (1,0) A=-2, r=1 -> 2; (1,1) A=-2, r=1.1 -> 2.2.
    # token_mean = 3.0 / 3 = 1.0
    logprobs = torch.tensor([[math.log(1.5), 100.0], [0.0, math.log(1.1)]], requires_grad=True)
    advantages = torch.tensor([[1.0, 1.0], [-2.0, -2.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    loss, stats = clipped_policy_loss(logprobs, torch.zeros(2, 2), advantages, mask, 0.2, 0.2, "token_mean")
    torch.testing.assert_close(loss, torch.tensor(1.0))
    loss.backward()
    assert torch.isfinite(logprobs.grad).all() and logprobs.grad[0, 1] == 0.0
    assert stats["clip_frac"] == pytest.approx(1 / 3)


def test_policy_loss_rejects_bad_clip_and_shapes():
    with pytest.raises(ValueError, match="clip_low"):
        clipped_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), 0.0, 0.2, "token_mean")
    with pytest.raises(ValueError, match="advantages"):
        clipped_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), 0.2, 0.2, "token_mean")


def test_clipped_value_loss_hand_computed():
    # clip 0.2, one row of 3 tokens:
    # V=1.0, V_old=0.5, R=1.0: V_clip = 0.7; errors 0 vs 0.09 -> 0.5 * 0.09 = 0.045 (clipped larger)
    # V=0.6, V_old=0.5, R=0.0: V_clip = 0.6; errors 0.36, 0.36 -> 0.18
    # V=0.0, V_old=0.5, R=1.0: V_clip = 0.3; errors 1.0 vs 0.49 -> 0.5
    # token_mean = (0.045 + 0.18 + 0.5) / 3 = 0.2416667; vf_clip_frac = 1/3; value_mean 1.6/3; return_mean 2/3
    values = torch.tensor([[1.0, 0.6, 0.0]])
    loss, stats = clipped_value_loss(
        values, torch.full((1, 3), 0.5), torch.tensor([[1.0, 0.0, 1.0]]), torch.ones(1, 3), 0.2, "token_mean"
    )
    torch.testing.assert_close(loss, torch.tensor(0.2416667))
    assert stats["vf_clip_frac"] == pytest.approx(1 / 3)
    assert stats["value_mean"] == pytest.approx(1.6 / 3)
    assert stats["return_mean"] == pytest.approx(2 / 3)


def test_entropy_from_logits():
    # [0, 0] -> uniform over 2: ln 2 = 0.6931472.
    # [0, ln 3] -> p = [0.25, 0.75]: H = 0.25 * 1.3862944 + 0.75 * 0.2876821 = 0.5623351.
    # [5, 5] -> ln 2 (shift invariance).
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, 5.0]]])
    torch.testing.assert_close(entropy_from_logits(logits, chunk_rows=2), torch.tensor([[0.6931472, 0.5623351, 0.6931472]]))
