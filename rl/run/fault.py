"""Failure handling for the RL loop: what to do when a loss is not finite or a Ray actor dies or hangs.

- `NonFiniteGuard` + `settle_step`: the trainer and critic ranks skip any optimizer step whose loss or gradient is
  NaN/inf (rl/workers/step_gate.py) and report it (`skipped_update_frac`, `nonfinite`, critic_*). The driver counts such
  RL steps and stops the run after fault.max_nonfinite_steps in a row (NonFiniteLossError: by then the weights or the
  data are broken, not unlucky); the adaptive KL controller moves only after an applied update with a finite KL, so
  one NaN cannot poison its coefficient; `finite_metrics` keeps NaN out of the logged row, which says
  `train/skipped_update` instead.
- `classify_actor_failure`: maps an exception from `ray.get` to a failure kind ("actor_died", "timeout", "oom",
  "task_error", "other").
- `RestartPolicy` + `run_with_restarts`: restart the run from its last checkpoint after a restartable failure, at most
  `fault.max_restarts` times; otherwise exit with the cause. "task_error" (an exception raised by our own code inside
  an actor) is not restartable by default: it would repeat on the same checkpoint.

Left out: elastic resizing (a lost rank is replaced by restarting everything from the checkpoint, not in place) and
restarting a single rollout engine while the others continue.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from rollouts.config_check import check_count, check_timeout

log = logging.getLogger("afrl")
T = TypeVar("T")
MAX_RESTARTS = 100
MAX_NONFINITE_STEPS = 1000

FAILURE_KINDS = ("actor_died", "timeout", "oom", "task_error", "judge_failure", "other")
RESTARTABLE_KINDS = ("actor_died", "timeout")


class NonFiniteLossError(FloatingPointError):
    """Too many consecutive RL steps had a non-finite loss."""


@dataclass
class FaultConfig:
    max_restarts: int = 0  # restarts from the last checkpoint after an actor dies or hangs; 0 = exit with the cause
    max_nonfinite_steps: int = 3  # consecutive steps with a NaN/inf loss or gradient (each one skipped) before a stop
    step_timeout_s: float = 3600.0  # deadline for one generate / update call across all actors; past it: "timeout"

    def __post_init__(self) -> None:
        # more restarts would loop on a broken run
        check_count("fault.max_restarts", self.max_restarts, 0, MAX_RESTARTS)
        check_count("fault.max_nonfinite_steps", self.max_nonfinite_steps, 1, MAX_NONFINITE_STEPS)
        check_timeout("fault.step_timeout_s", self.step_timeout_s)


class NonFiniteGuard:
    """Counts consecutive RL steps whose update was skipped for a NaN/inf loss or gradient (the trainer and critic
    ranks skip the optimizer step themselves, rl/workers/step_gate.py). `observe` says whether the step's update was
    applied."""

    def __init__(self, max_consecutive: int):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped_total = 0

    def observe(self, step: int, skipped: bool, reason: str = "update skipped") -> bool:
        """True: the update was applied. False: it was skipped (logged with `reason`). Raises NonFiniteLossError on
        the K-th skipped step in a row (K = fault.max_nonfinite_steps)."""
        if not skipped:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped_total += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"step {step}: {reason}, {self.consecutive} non-finite steps in a row "
                f"(fault.max_nonfinite_steps={self.max_consecutive}); stopping. Lower algo.lr, check the rewards for "
                "NaN, or set algo.tis_cap to bound importance weights."
            )
        log.warning("step %d: %s; update skipped (%d in a row, %d in total)", step, reason, self.consecutive,
                    self.skipped_total)
        return False

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive, self.skipped_total = int(state["consecutive"]), int(state["skipped_total"])


# ---- actor failures and restarts -------------------------------------------------------------------------------------
def classify_actor_failure(exc: BaseException) -> str:
    """One of FAILURE_KINDS for an exception raised by `ray.get` (or by our code around it)."""
    import ray.exceptions as rex

    from rewards.judge_errors import JudgeFailureError

    if isinstance(exc, JudgeFailureError):  # the same judge would fail again after a restart: never restartable
        return "judge_failure"
    if isinstance(exc, rex.RayTaskError):
        # Our code raised inside an actor; if that was itself a Ray failure (it called a dead actor), report that.
        cause = getattr(exc, "cause", None)
        if isinstance(cause, rex.RayError) and not isinstance(cause, rex.RayTaskError):
            return classify_actor_failure(cause)
        return "task_error"
    if isinstance(exc, (rex.OutOfMemoryError, rex.ObjectStoreFullError)):
        return "oom"
    if isinstance(exc, (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError,
                        rex.OwnerDiedError)):
        return "actor_died"
    if isinstance(exc, TimeoutError):  # ray's GetTimeoutError is one, and so is Cluster.sync_weights' error
        return "timeout"
    return "other"


@dataclass
class FailureDecision:
    restart: bool
    kind: str
    message: str


class RestartPolicy:
    """Decides, failure by failure, whether the run restarts from its last checkpoint or exits with the cause."""

    def __init__(self, max_restarts: int, restartable: Iterable[str] = RESTARTABLE_KINDS):
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        unknown = set(restartable) - set(FAILURE_KINDS)
        if unknown:
            raise ValueError(f"unknown failure kinds {sorted(unknown)}; expected some of {FAILURE_KINDS}")
        self.max_restarts = max_restarts
        self.restartable = tuple(restartable)
        self.restarts = 0

    def decide(self, exc: BaseException) -> FailureDecision:
        kind = classify_actor_failure(exc)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        cause = f"{kind}: {type(exc).__name__}: {first_line}"
        if kind not in self.restartable:
            return FailureDecision(False, kind, f"{cause} -- not restartable ({self.restartable} are); exiting")
        if self.restarts >= self.max_restarts:
            used = f"{self.restarts} of fault.max_restarts={self.max_restarts}"
            return FailureDecision(False, kind, f"{cause} -- no restarts left ({used}); exiting")
        self.restarts += 1
        return FailureDecision(
            True, kind, f"{cause} -- restart {self.restarts} of {self.max_restarts} from the last checkpoint"
        )


class RunFailed(RuntimeError):
    """The run stopped after a failure it could not (or may no longer) restart from; the cause is chained."""


def run_with_restarts(
    attempt: Callable[[int], T], policy: RestartPolicy, cleanup: Callable[[], None] | None = None
) -> T:
    """Call `attempt(n)` (n = 0, 1, ...) until it returns. After a failure: `cleanup()` (e.g. kill the actors, shut
    Ray down), then retry if the policy allows, else raise RunFailed naming the cause. `attempt(n > 0)` is expected
    to resume from the run's last checkpoint."""
    number = 0
    while True:
        try:
            return attempt(number)
        except Exception as exc:  # noqa: BLE001 - every failure is classified; non-restartable ones re-raise below
            decision = policy.decide(exc)
            log.error("attempt %d failed: %s", number, decision.message)
            if cleanup is not None:
                try:
                    cleanup()
                except Exception as cleanup_error:  # noqa: BLE001 - the original failure is the one to report
                    log.warning("cleanup after the failure also failed: %r", cleanup_error)
            if not decision.restart:
                raise RunFailed(decision.message) from exc
            number += 1


# ---- the driver's side of the non-finite guard -----------------------------------------------------------------------
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
