"""Failure handling: the non-finite guard, failure classification, restart policy; one real Ray test for dead actors."""
from __future__ import annotations

import time

import pytest
import ray.exceptions as rex

from rl.run.fault import (
    FaultConfig, NonFiniteGuard, NonFiniteLossError, RestartPolicy, RunFailed, classify_actor_failure,
    run_with_restarts,
)


def test_guard_counts_skipped_updates_and_stops_after_k_in_a_row():
    guard = NonFiniteGuard(max_consecutive=3)
    assert guard.observe(1, skipped=False) is True
    assert guard.observe(2, skipped=True, reason="loss is nan") is False
    assert guard.observe(3, skipped=True, reason="loss is inf") is False
    assert guard.observe(4, skipped=False) is True  # an applied update resets the run of failures
    assert (guard.consecutive, guard.skipped_total) == (0, 2)
    assert guard.observe(5, skipped=True) is False and guard.observe(6, skipped=True) is False
    with pytest.raises(NonFiniteLossError, match=r"step 7: loss is nan, 3 non-finite steps in a row .*steps=3"):
        guard.observe(7, skipped=True, reason="loss is nan")


def test_guard_state_survives_a_checkpoint_round_trip():
    guard = NonFiniteGuard(max_consecutive=2)
    guard.observe(1, skipped=True)
    restored = NonFiniteGuard(max_consecutive=2)
    restored.load_state_dict(guard.state_dict())
    with pytest.raises(NonFiniteLossError):
        restored.observe(2, skipped=True)  # the run of failures continues across the resume


@pytest.mark.parametrize("bad", [0, -1])
def test_guard_rejects_a_non_positive_limit(bad):
    with pytest.raises(ValueError, match=f"max_consecutive must be >= 1, got {bad}"):
        NonFiniteGuard(bad)


@pytest.mark.parametrize("exc, kind", [
    (rex.RayActorError(), "actor_died"),
    (rex.ActorDiedError(), "actor_died"),
    (rex.ActorUnavailableError("gone", b"\0" * 16), "actor_died"),
    (rex.WorkerCrashedError(), "actor_died"),
    (rex.GetTimeoutError("get timed out"), "timeout"),
    (TimeoutError("weight sync did not finish"), "timeout"),
    (rex.OutOfMemoryError("killed"), "oom"),
    (ValueError("bad"), "other"),
])
def test_classification_of_ray_and_local_errors(exc, kind):
    assert classify_actor_failure(exc) == kind


def test_a_task_error_is_classified_by_its_cause():
    own_bug = rex.RayTaskError("update", "Traceback...", FloatingPointError("nan"))
    called_a_dead_actor = rex.RayTaskError("generate", "Traceback...", rex.ActorDiedError())
    assert classify_actor_failure(own_bug) == "task_error"
    assert classify_actor_failure(own_bug.as_instanceof_cause()) == "task_error"
    assert classify_actor_failure(called_a_dead_actor) == "actor_died"


def test_restart_policy_restarts_up_to_the_limit_then_exits_with_the_cause():
    policy = RestartPolicy(max_restarts=2)
    first, second = policy.decide(rex.ActorDiedError()), policy.decide(TimeoutError("sync"))
    assert (first.restart, first.kind, second.restart, second.kind) == (True, "actor_died", True, "timeout")
    assert "restart 2 of 2" in second.message
    third = policy.decide(rex.ActorDiedError())
    assert not third.restart and "no restarts left (2 of fault.max_restarts=2)" in third.message


def test_restart_policy_never_restarts_our_own_errors():
    decision = RestartPolicy(max_restarts=5).decide(rex.RayTaskError("update", "tb", KeyError("x")))
    assert not decision.restart and decision.kind == "task_error" and "not restartable" in decision.message


def test_run_with_restarts_resumes_after_a_dead_actor_and_reports_the_final_cause():
    attempts, cleanups = [], []

    def attempt(number: int) -> str:
        attempts.append(number)
        if number == 0:
            raise rex.ActorDiedError()
        return f"finished on attempt {number}"

    assert run_with_restarts(attempt, RestartPolicy(1), lambda: cleanups.append(1)) == "finished on attempt 1"
    assert attempts == [0, 1] and cleanups == [1]

    def always_dies(number: int) -> None:
        raise rex.ActorDiedError()

    with pytest.raises(RunFailed, match="actor_died: ActorDiedError.*no restarts left") as err:
        run_with_restarts(always_dies, RestartPolicy(1))
    assert isinstance(err.value.__cause__, rex.ActorDiedError)


def test_fault_config_validates_its_fields():
    assert FaultConfig().max_restarts == 0
    with pytest.raises(ValueError, match=r"fault\.max_nonfinite_steps: expected an int in \[1, 1000\], got 0"):
        FaultConfig(max_nonfinite_steps=0)
    with pytest.raises(ValueError, match=r"fault\.max_restarts: expected an int in \[0, 100\], got -1"):
        FaultConfig(max_restarts=-1)


# ---- real Ray: a killed actor, a hung actor, a failing actor -------------------------------------------------------
class _Worker:
    def ping(self) -> str:
        return "pong"

    def hang(self, seconds: float) -> None:
        time.sleep(seconds)

    def fail(self) -> None:
        raise FloatingPointError("non-finite loss 1e400 on rank 0")


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.heavy
def test_real_ray_failures_are_classified_and_a_dead_peer_is_reported_without_waiting_for_a_hung_one(ray_session):
    from rl.workers.placement import get_all_or_raise

    ray = ray_session
    Worker = ray.remote(num_cpus=0)(_Worker)
    dead, hung, failing = Worker.remote(), Worker.remote(), Worker.remote()
    assert ray.get(dead.ping.remote()) == "pong"
    ray.kill(dead)
    with pytest.raises(rex.RayActorError) as died:
        deadline = time.monotonic() + 30
        # ray.kill is asynchronous: on a busy machine a call sent at once may still be answered
        while time.monotonic() < deadline:
            ray.get(dead.ping.remote(), timeout=30)
            time.sleep(0.2)
    assert classify_actor_failure(died.value) == "actor_died"

    with pytest.raises(rex.GetTimeoutError) as timed_out:
        ray.get(hung.hang.remote(5), timeout=0.2)
    assert classify_actor_failure(timed_out.value) == "timeout"

    with pytest.raises(rex.RayTaskError) as task_error:
        ray.get(failing.fail.remote())
    assert classify_actor_failure(task_error.value) == "task_error"

    # A hung rank listed first must not hide the dead one: the failure comes back long before the hang ends.
    start = time.monotonic()
    with pytest.raises(rex.RayActorError) as peer_died:
        get_all_or_raise([hung.hang.remote(20), dead.ping.remote()], timeout_s=15, what="update")
    assert time.monotonic() - start < 10 and classify_actor_failure(peer_died.value) == "actor_died"
    with pytest.raises(TimeoutError, match=r"generate: 2 of 2 calls unfinished after 0.5s"):
        get_all_or_raise([hung.hang.remote(20), hung.ping.remote()], timeout_s=0.5, what="generate")
    ray.kill(hung)
    ray.kill(failing)


def test_a_build_lock_left_by_a_killed_build_is_removed_and_a_fresh_one_kept(tmp_path, monkeypatch):
    """A killed DeepSpeed op build leaves torch's lock file, on which every later trainer init would wait forever."""
    import os
    import time

    from rl.workers.deepspeed_rank import clear_stale_build_lock

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert clear_stale_build_lock("some_op") is None  # no lock: nothing to do
    lock = next(tmp_path.rglob("some_op")) / "lock"
    lock.touch()
    assert clear_stale_build_lock("some_op", max_age_s=600) is None and lock.exists()  # a build may be running
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert clear_stale_build_lock("some_op", max_age_s=600) == lock and not lock.exists()
