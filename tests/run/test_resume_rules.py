"""The `resume` setting (rl/run/resume.py) on real checkpoint folders written by `save_checkpoint`: which checkpoint a
run starts from, which folder it writes to, and the settings that are refused with a message naming the folder."""
from __future__ import annotations

import time

import pytest

from rl.config import _check_resume
from rl.run import checkpoint as ckpt
from rl.run.resume import ResumeError, ResumePlan, plan_resume, target_run_dir
from rollouts.config_check import ConfigError
from tests.run.test_checkpoint import save


def test_auto_resumes_the_run_folders_own_checkpoint_and_starts_fresh_without_one(tmp_path):
    run_dir = tmp_path / "outputs" / "smoke" / "run"
    assert plan_resume("auto", run_dir, "smoke", (tmp_path / "outputs",)) == ResumePlan(
        None, run_dir, "resume=auto: no checkpoint in the run folder, starting a fresh run")
    save(tmp_path / "outputs" / "smoke" / "other_run", 7)  # another run of the experiment is never picked by auto
    latest = save(run_dir, 2)
    assert plan_resume("auto", run_dir, "smoke", (tmp_path / "outputs",)) == ResumePlan(
        latest, run_dir, f"resume=auto: resuming from {latest}")


@pytest.mark.parametrize("value", [None, "false", "False", "none"])
def test_a_fresh_run_over_checkpoints_is_refused_and_allowed_in_an_empty_folder(tmp_path, value):
    assert plan_resume(value, tmp_path / "empty", "smoke").checkpoint is None
    save(tmp_path / "run", 3)
    with pytest.raises(ResumeError, match=r"run folder .*/run already holds checkpoints \(step_000003\); a fresh run "
                                          r"there would delete them. Use resume=auto"):
        plan_resume(value, tmp_path / "run", "smoke")


def test_resume_true_searches_outputs_and_sweep_folders_and_finding_nothing_is_an_error(tmp_path):
    outputs, multirun = tmp_path / "outputs", tmp_path / "multirun"
    with pytest.raises(ResumeError, match=r"resume=true: no checkpoint of exp_name=smoke under .*outputs/smoke or "
                                          r".*multirun/smoke"):
        plan_resume("true", tmp_path / "new", "smoke", (outputs, multirun))
    save(outputs / "smoke" / "run_a", 2)
    time.sleep(0.01)
    newest = save(multirun / "smoke" / "2026-12-02_10-00-00" / "3", 1)  # a sweep job's subfolder
    plan = plan_resume("true", tmp_path / "new", "smoke", (outputs, multirun))
    assert plan == ResumePlan(newest, multirun / "smoke" / "2026-12-02_10-00-00" / "3", f"resuming from {newest}")


def test_an_explicit_path_must_exist_at_validation_and_hold_a_usable_checkpoint_at_start(tmp_path):
    with pytest.raises(ConfigError, match=r"resume: no run folder or checkpoint at '/no/such/run'"):
        _check_resume("/no/such/run")
    (tmp_path / "empty").mkdir()
    _check_resume(str(tmp_path / "empty"))  # exists: the checkpoint itself is looked for at start, under the lock
    with pytest.raises(ResumeError, match=r"resume=.*/empty: that folder has no usable checkpoint"):
        target_run_dir(str(tmp_path / "empty"), tmp_path / "new", "smoke")


def test_an_explicit_older_checkpoint_writes_into_its_run_and_warns_about_the_newer_ones(tmp_path, caplog):
    run_dir = tmp_path / "run"
    older = save(run_dir, 1, keep_last=3)
    save(run_dir, 2, keep_last=3)
    assert target_run_dir(str(older), tmp_path / "new", "smoke") == run_dir
    with caplog.at_level("WARNING", logger="afrl"):
        plan = plan_resume(str(older), tmp_path / "new", "smoke")
    assert plan == ResumePlan(older, run_dir, f"resuming from {older}")
    assert "newer checkpoints (step_000002) belong to the abandoned timeline" in caplog.text
    with caplog.at_level("WARNING", logger="afrl"):
        save(run_dir, 2, keep_last=3)  # the resumed timeline's step 2 replaces the abandoned one
        ckpt.save_checkpoint(run_dir, 1, {"config": {}}, lambda d: None, 3)  # an older save drops step 2, logged
    assert "removing checkpoint" in caplog.text and "abandoned by resuming" in caplog.text
