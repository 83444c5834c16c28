"""What the driver does with one RL step's update stats: the non-finite guard's verdict, the KL controller, the row.

The trainer and critic ranks have already skipped any optimizer step whose loss or gradient was NaN/inf
(rl/step_gate.py) and report it (`skipped_update_frac`, `nonfinite`, critic_*). Here:
- the guard counts an RL step with any skipped optimizer step, and stops the run after fault.max_nonfinite_steps in a
  row (NonFiniteLossError);
- the adaptive KL controller moves only after an applied update and only with a finite KL, so one NaN cannot make
  its coefficient NaN for the rest of the run (and in every checkpoint after);
- the logged row keeps finite numbers only, with `train/skipped_update` (1.0: this step's update was skipped, in
  whole or in part) in place of the NaN.
"""
from __future__ import annotations

import logging
import math

log = logging.getLogger("afrl")


def skip_reasons(train_stats: dict[str, float]) -> list[str]:
    """Why (some of) this step's optimizer updates were skipped, one phrase per learner; empty when none was."""
    reasons = []
    for who, prefix in (("policy", ""), ("critic", "critic_")):
        skipped = train_stats.get(f"{prefix}skipped_update_frac", 0.0)
        if not skipped > 0:
            continue
        cause = "loss" if train_stats.get(f"{prefix}nonfinite", 0.0) > 0 else "gradient"
        reasons.append(f"{who} update skipped ({skipped:.0%} of its optimizer steps) for a non-finite {cause}")
    return reasons


def settle_step(step: int, guard, kl_ctl, train_stats: dict[str, float], measured_kl: float | None,
                n_samples: int) -> dict[str, float]:
    """Record the step with `guard` (raises NonFiniteLossError on the K-th skipped step in a row), update `kl_ctl`
    with `measured_kl` when the update was applied and the KL is finite. Returns the step's guard metrics."""
    reasons = skip_reasons(train_stats)
    applied = guard.observe(step, skipped=bool(reasons), reason="; ".join(reasons))
    kl_usable = measured_kl is not None and math.isfinite(measured_kl)
    if applied and kl_usable:
        kl_ctl.update(measured_kl, n_samples)
    elif applied and measured_kl is not None:
        log.warning("step %d: KL %s is not finite; the KL coefficient stays at %s", step, measured_kl, kl_ctl.value)
    return {"train/skipped_update": 0.0 if applied else 1.0}


def finite_metrics(step: int, metrics: dict) -> dict:
    """The metrics row without NaN/inf numbers (one warning names the dropped keys); other values pass unchanged."""
    dropped = sorted(k for k, v in metrics.items()
                     if isinstance(v, float) and not math.isfinite(v))
    if dropped:
        log.warning("step %d: not logging non-finite %s", step, ", ".join(dropped))
    return {k: v for k, v in metrics.items() if k not in dropped}
