"""The run folder (rl/run/folder.py): one owner, its name, and train.log."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rl.config import register_schema
from rl.run.folder import RunFolderLocked, RunLock, default_run_name, log_failure_to_files, log_to_file, slurm_job_name
from tests.train_runs import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from rl.run.folder import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _start_holder(tmp_path: Path, run_dir: Path) -> subprocess.Popen:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(repo=str(REPO)))
    holder = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_dies_with_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = _start_holder(tmp_path, run_dir)
    try:
        with pytest.raises(RunFolderLocked, match=rf"run folder {run_dir} is in use by pid {holder.pid} on "
                                                  rf"{os.uname().nodename} since .*holder.py {run_dir}"):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, no stale lock file blocks the next run
        holder.wait()
    with RunLock(run_dir) as lock:
        assert f'"pid": {os.getpid()}' in lock.path.read_text()
    RunLock(run_dir).acquire().release()  # released on exit from the with block


def test_a_second_writer_launched_through_train_py_stops_before_starting_anything(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    holder = _start_holder(tmp_path, run_dir)
    try:
        result = subprocess.run(
            [sys.executable, str(REPO / "launch" / "train.py"), "+exp=smoke", f"model.path={tiny_model_dir}",
             f"run_dir={run_dir}"], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"RunFolderLocked: run folder {run_dir} is in use by pid {holder.pid}" in result.stderr, result.stderr
    assert "RunFolderLocked" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "run_info.json").exists()


def test_run_names_differ_by_pid_and_follow_the_slurm_job():
    assert slurm_job_name({"SLURM_JOB_ID": "812"}) == "slurm-812"
    assert slurm_job_name({"SLURM_JOB_ID": "813", "SLURM_ARRAY_JOB_ID": "800", "SLURM_ARRAY_TASK_ID": "3"}) == (
        "slurm-800_3")
    assert slurm_job_name({}) is None
    names = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from rl.run.folder import "
         "default_run_name as n; import subprocess; print(n({}))", str(REPO)], capture_output=True, text=True)
    mine = default_run_name({})
    assert names.returncode == 0 and names.stdout.strip() != mine  # launched in the same second: another pid
    assert mine.endswith(f"-{os.getpid()}")


def test_hydra_run_dir_is_run_dir_when_given_else_named_per_job(tmp_path, monkeypatch):
    register_schema()

    def run_dir_of(*overrides: str) -> str:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True).hydra.run.dir

    assert run_dir_of("+exp=smoke", f"run_dir={tmp_path}/mine") == f"{tmp_path}/mine"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert run_dir_of("+exp=smoke") == "outputs/smoke/slurm-4242"  # a requeued job finds its folder again


def test_train_log_gets_the_traceback_of_a_failure_once(tmp_path):
    logger = logging.getLogger("afrl")
    path = log_to_file(tmp_path)
    assert log_to_file(tmp_path) == path  # no second handler for the same file
    try:
        try:
            raise RuntimeError("placement group not ready")
        except RuntimeError as error:
            assert log_failure_to_files(error) >= 1
        text = path.read_text()
        assert "run stopped: RuntimeError: placement group not ready" in text and "Traceback" in text
        assert text.count("run stopped") == 1
    finally:
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(handler)
            handler.close()


def test_resume_true_with_no_checkpoint_anywhere_stops_at_start_naming_where_it_looked(tmp_path, tiny_model_dir):
    result = subprocess.run(
        [sys.executable, str(REPO / "launch" / "train.py"), "+exp=smoke", f"model.path={tiny_model_dir}",
         f"run_dir={tmp_path / 'run'}", "exp_name=never_run_before", "resume=true"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 1
    assert ("ResumeError: resume=true: no checkpoint of exp_name=never_run_before under outputs/never_run_before or "
            "multirun/never_run_before") in result.stderr, result.stderr
