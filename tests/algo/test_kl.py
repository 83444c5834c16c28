"""KL estimators, KL placement and KL coefficient controllers against hand-computed values."""
import math

import pytest
import torch

from rl.algo.kl import AdaptiveKLController, FixedKLController, kl_estimate, kl_penalty_in_reward
from rl.algo.losses import aggregate_token_loss

# Token 0: pi = 0.5, ref = 0.25 -> log r = ln(ref/pi) = -ln 2 = -0.6931472
#   k1 = 0.6931472, k2 = 0.5 * 0.4804530 = 0.2402265, k3 = 0.5 - 1 + 0.6931472 = 0.1931472
# Token 1: pi = 0.25, ref = 0.5 -> log r = ln 2
#   k1 = -0.6931472, k2 = 0.2402265, k3 = 2 - 1 - 0.6931472 = 0.3068528
LOGPROBS = torch.tensor([[math.log(0.5), math.log(0.25)]])
REF = torch.tensor([[math.log(0.25), math.log(0.5)]])


@pytest.mark.parametrize(
    "kind, expected",
    [("k1", [0.6931472, -0.6931472]), ("k2", [0.2402265, 0.2402265]), ("k3", [0.1931472, 0.3068528])],
)
def test_kl_estimators_hand_computed(kind, expected):
    torch.testing.assert_close(kl_estimate(LOGPROBS, REF, kind), torch.tensor([expected]))


def test_k1_and_k3_are_unbiased_k2_is_not():
    # Exact expectation over pi = [0.5, 0.25, 0.25], ref = [0.25, 0.25, 0.5]:
    # KL(pi || ref) = 0.5 ln 2 + 0 + 0.25 ln 0.5 = 0.25 ln 2 = 0.1732868
    # E_pi[k2] = 0.5 * (0.5 + 0.25) * (ln 2)^2 = 0.1801699 (biased)
    pi = torch.tensor([0.5, 0.25, 0.25])
    ref = torch.tensor([0.25, 0.25, 0.5])
    expectation = {kind: (pi * kl_estimate(pi.log()[None], ref.log()[None], kind)[0]).sum().item() for kind in ("k1", "k2", "k3")}
    assert expectation["k1"] == pytest.approx(0.1732868, abs=1e-6)
    assert expectation["k3"] == pytest.approx(0.1732868, abs=1e-6)
    assert expectation["k2"] == pytest.approx(0.1801699, abs=1e-6)


def test_unknown_estimator_names_it():
    with pytest.raises(ValueError, match="'k4'"):
        kl_estimate(LOGPROBS, REF, "k4")


def test_kl_in_loss_gradient_flows_through_logprobs():
    # GRPO placement: k1 = logprob - ref, token_mean over the 2 trained of 3 tokens -> d/d logprob = 1/2 each, 0 on padding.
    logprobs = torch.zeros(1, 3, requires_grad=True)
    penalty = aggregate_token_loss(kl_estimate(logprobs, torch.zeros(1, 3), "k1"), torch.tensor([[1, 1, 0]]), "token_mean")
    penalty.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.5, 0.5, 0.0]]))


def test_kl_in_reward_is_detached_and_masked():
    # PPO-RLHF placement: r_t = score_t - 0.5 * KL_t: [0 - 0.05, 0 - 0.1, 2 - 0.15] = [-0.05, -0.1, 1.85]; padding -> 0.
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    scores = torch.tensor([[0.0, 0.0, 2.0, 0.0]])
    rewards = kl_penalty_in_reward(scores, kl, coef=0.5, mask=torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.1, 1.85, 0.0]]))
    assert not rewards.requires_grad


def test_adaptive_kl_controller_ziegler_update():
    # init 0.1, target 6, horizon 10000.
    # KL 9: e = clip(9/6 - 1 = 0.5) = 0.2; 1000 samples -> 0.1 * (1 + 0.2 * 0.1) = 0.102
    # KL 5.4: e = 0.9 - 1 = -0.1; 500 samples -> 0.102 * (1 - 0.1 * 0.05) = 0.10149
    controller = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    controller.update(current_kl=9.0, n_steps=1000)
    assert controller.value == pytest.approx(0.102)
    controller.update(current_kl=5.4, n_steps=500)
    assert controller.value == pytest.approx(0.10149)


def test_fixed_kl_controller_and_bad_arguments():
    controller = FixedKLController(0.05)
    controller.update(current_kl=100.0, n_steps=10)
    assert controller.value == 0.05
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="coef"):
        FixedKLController(-1.0)


def test_adaptive_kl_state_round_trips_for_resume():
    # 0.1 * (1 + 0.2 * 1000 / 10000) = 0.102 must survive a checkpoint.
    controller = AdaptiveKLController(0.1, 6.0, 10000)
    controller.update(current_kl=9.0, n_steps=1000)
    restored = AdaptiveKLController(0.1, 6.0, 10000)
    restored.load_state_dict(controller.state_dict())
    assert restored.value == pytest.approx(0.102)


def test_adaptive_controller_refuses_a_non_finite_kl_and_a_non_finite_saved_coefficient():
    from rl.algo.kl import AdaptiveKLController, FixedKLController

    controller = AdaptiveKLController(0.1, target=6.0, horizon=100)
    with pytest.raises(ValueError, match=r"non-finite KL \(nan\); the coefficient stays 0.1"):
        controller.update(float("nan"), 8)
    assert controller.value == 0.1
    for kind in (controller, FixedKLController(0.1)):
        with pytest.raises(ValueError, match="KL controller state: value must be a finite number >= 0, got nan"):
            kind.load_state_dict({"value": float("nan")})
