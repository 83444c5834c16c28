"""A run told to stop (SIGTERM to the driver, SIGUSR2 to every other process of the job, as Slurm does before a time
limit) checkpoints after its current step and exits with status 75; the same command line then continues it at the
next step with the data order of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rl.config import load_config, register_schema
from rl.run.data_order import step_indices
from rl.run.preemption import PREEMPTED_EXIT_CODE
from rollouts.datasets import load_requests, split_requests
from tests.train_runs import HANG_GUARD_S, REPO, read_jsonl, run_train, train_command, train_env

pytestmark = pytest.mark.heavy

OVERRIDES = ("total_steps=3", "ckpt.every=0", "eval.at_start=false")  # every checkpoint comes from the stop


def _trained_steps(run_dir) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [r["step"] for r in read_jsonl(path) if "train/loss" in r] if path.exists() else []


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != session:
            try:
                if os.getsid(int(entry)) == session:
                    pids.append(int(entry))
            except ProcessLookupError:
                pass
    return pids


def _expected_order(model_dir) -> dict[int, list[str]]:
    register_schema()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = load_config(compose("config", overrides=["+exp=smoke", f"model.path={model_dir}", *OVERRIDES]))
    train, _ = split_requests(load_requests(cfg.data, cfg.setting.name), cfg.data.eval_fraction, cfg.data.split_salt)
    return {step: [train[i].id for i in step_indices(len(train), cfg.rollout.prompts_per_step, cfg.seed, step)]
            for step in (1, 2, 3)}


def test_sigterm_checkpoints_exits_75_and_the_same_command_continues(tiny_model_dir, tmp_path):
    run_dir, log_path = tmp_path / "run", tmp_path / "preempted_output.txt"
    with open(log_path, "w") as output:
        process = subprocess.Popen(train_command(tiny_model_dir, run_dir, *OVERRIDES), cwd=REPO, env=train_env(),
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 400
        while not _trained_steps(run_dir):
            assert process.poll() is None and time.time() < deadline, (
                f"no step 1 (exit {process.returncode}):\n{log_path.read_text()[-6000:]}")
            time.sleep(0.2)
        others = _session_pids(process.pid)
        for pid in others:  # Ray's daemons, the actors, vLLM's processes: they must not die of it
            try:
                os.kill(pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass
        signalled = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=HANG_GUARD_S)
        stop_seconds = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log_path.read_text()
    assert process.returncode == PREEMPTED_EXIT_CODE, f"exit {process.returncode}:\n{output[-6000:]}"
    saved = (run_dir / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(saved.removeprefix("step_"))
    assert stopped_at in (1, 2), saved  # the step that was running when the signal came
    assert f"stopped after step {stopped_at} (SIGTERM received" in output
    assert "SIGTERM received" in (run_dir / "train.log").read_text()
    assert _trained_steps(run_dir) == list(range(1, stopped_at + 1))
    print(f"\n[preemption] {len(others)} other processes got SIGUSR2; SIGTERM after step 1 was logged; stopped after "
          f"step {stopped_at} with exit status {process.returncode}, {stop_seconds:.1f}s after the signal")

    started = time.monotonic()
    result = run_train(tiny_model_dir, run_dir, *OVERRIDES)  # the same command line: resume=auto
    print(f"[preemption] relaunch: exit {result.returncode} in {time.monotonic() - started:.0f}s")
    assert f"resume=auto: resuming from {run_dir / 'checkpoints' / saved}" in result.stdout + result.stderr
    assert _trained_steps(run_dir) == [1, 2, 3], "each step logged exactly once"
    evals = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/free/compliance" in r]
    assert evals == [2, 3]  # an eval skipped by the stop at step 2 runs when the run continues
    order = {r["step"]: r["request_ids"] for r in read_jsonl(run_dir / "data_order.jsonl")}
    assert order == _expected_order(tiny_model_dir)
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
