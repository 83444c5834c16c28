"""A rollout engine killed mid-run: the run restarts from its last checkpoint and finishes (fault.max_restarts)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.train_runs import HANG_GUARD_S, REPO, read_jsonl, train_command, train_env

pytestmark = pytest.mark.heavy


def _engine_pids(session: int) -> list[int]:
    """RolloutEngine actor processes of this run only: the same session as the driver (Ray gives each worker its own
    process group, but not its own session)."""
    found = subprocess.run(["pgrep", "-f", "ray::RolloutEngine"], capture_output=True, text=True).stdout.split()
    pids = []
    for pid in map(int, found):
        try:
            if os.getsid(pid) == session:
                pids.append(pid)
        except ProcessLookupError:
            pass
    return pids


def test_killed_engine_restarts_from_the_last_checkpoint(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        train_command(tiny_model_dir, run_dir, "total_steps=3", "ckpt.every=1", "fault.max_restarts=1",
                      "eval.at_start=false"),
        cwd=REPO, env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not (run_dir / "checkpoints" / "latest").exists():
            assert process.poll() is None and time.time() < deadline, "no checkpoint before the deadline"
            time.sleep(0.2)
        victims = _engine_pids(process.pid)
        assert victims, "found no rollout engine of this run"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=HANG_GUARD_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-4000:]
    assert "restart 1 of 1" in output
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert steps == [1, 2, 3], steps  # each step once: the restart resumed after the last checkpoint
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
