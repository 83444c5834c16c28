"""The driver's side of a skipped update, without Ray: the guard's verdict gates the KL controller, K skipped steps in
a row stop the run, and no NaN reaches the logged row."""
from __future__ import annotations

import math

import pytest

from rl.algo.config import AlgoConfig, build_kl_controller
from rl.run.fault import NonFiniteGuard, NonFiniteLossError, finite_metrics, settle_step, skip_reasons

APPLIED = {"loss": 0.1, "nonfinite": 0.0, "skipped_update_frac": 0.0, "kl_response_sum": 9.0}
SKIPPED_LOSS = {"nonfinite": 0.5, "skipped_update_frac": 1.0}
SKIPPED_GRAD = {"loss": 0.1, "nonfinite": 0.0, "skipped_update_frac": 1.0}


def _adaptive():
    return build_kl_controller(AlgoConfig(kl_coef=0.1, adaptive_kl=True, kl_target=6.0, kl_horizon=100))


def test_the_kl_controller_moves_only_after_an_applied_update_with_a_finite_kl():
    guard, kl = NonFiniteGuard(3), _adaptive()
    assert settle_step(1, guard, kl, SKIPPED_LOSS, math.nan, 8) == {"train/skipped_update": 1.0}
    assert kl.value == 0.1  # a NaN KL on a skipped step: untouched (else the coefficient stays NaN for good)
    assert settle_step(2, guard, kl, SKIPPED_GRAD, 9.0, 8) == {"train/skipped_update": 1.0}
    assert kl.value == 0.1  # a finite KL, but the update it measured was not applied
    assert settle_step(3, guard, kl, APPLIED, math.inf, 8) == {"train/skipped_update": 0.0}
    assert kl.value == 0.1  # applied, but an inf KL says nothing usable
    settle_step(4, guard, kl, APPLIED, 9.0, 8)
    assert kl.value == pytest.approx(0.1 * (1 + 0.2 * 8 / 100))  # KL above target: the coefficient grows
    assert math.isfinite(kl.state_dict()["value"]) and guard.state_dict() == {"consecutive": 0, "skipped_total": 2}


def test_k_skipped_steps_in_a_row_stop_the_run_and_an_applied_one_resets_the_count():
    guard, kl = NonFiniteGuard(2), _adaptive()
    settle_step(1, guard, kl, SKIPPED_LOSS, None, 8)
    settle_step(2, guard, kl, APPLIED, 6.0, 8)
    settle_step(3, guard, kl, {"critic_skipped_update_frac": 1.0, "critic_nonfinite": 1.0}, None, 8)
    with pytest.raises(NonFiniteLossError, match=r"step 4: policy update skipped \(100% of its optimizer steps\) for "
                                                 r"a non-finite gradient, 2 non-finite steps in a row "
                                                 r"\(fault.max_nonfinite_steps=2\)"):
        settle_step(4, guard, kl, SKIPPED_GRAD, 6.0, 8)


def test_skip_reasons_name_the_learner_and_the_cause():
    assert skip_reasons(APPLIED) == []
    assert skip_reasons({**SKIPPED_LOSS, "critic_skipped_update_frac": 0.5, "critic_nonfinite": 0.0}) == [
        "policy update skipped (100% of its optimizer steps) for a non-finite loss",
        "critic update skipped (50% of its optimizer steps) for a non-finite gradient",
    ]


def test_the_logged_row_drops_non_finite_numbers_only():
    row = {"train/reward_mean": math.nan, "train/loss": 0.5, "train/skipped_update": 1.0, "eval/method/af": "ngram",
           "train/grad_norm": -math.inf, "train/steps": 3}
    assert finite_metrics(7, row) == {"train/loss": 0.5, "train/skipped_update": 1.0, "eval/method/af": "ngram",
                                      "train/steps": 3}
