"""Checkpoint safety without Ray: fake rank writers produce small files through the real `save_checkpoint`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rl.run import checkpoint as ckpt
from rl.run.data_order import step_indices
from rl.run.resume import ResumePlan, plan_resume

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "exp_name": "smoke", "seed": 0, "total_steps": 3, "resume": None, "run_dir": "/runs/a",
    "model": {"name": "tiny", "path": "/models/tiny", "gradient_checkpointing": False},
    "algo": {"name": "grpo", "group_size": 2, "kl_coef": 0.05, "lr": 1e-6},
    "rollout": {"prompts_per_step": 2, "max_new_tokens": 16, "sync_timeout_s": 600.0, "stop": []},
    "setting": {"name": "helpful_only"}, "data": {"source": "demo"}, "reward": {"kind": "rule"},
    "eval": {"every": 2, "n": 2}, "logger": {"wandb": True}, "ckpt": {"every": 2, "keep_last": 2},
    "ray": {"address": None}, "hardware": {"device": "auto"},
}


def write_ranks(payload: bytes = b"weights" * 100):
    """A stand-in for Cluster.save: two ranks' files, one in a subfolder like DeepSpeed's."""

    def save_ranks(directory: str) -> None:
        Path(directory, "deepspeed").mkdir()
        Path(directory, "deepspeed", "mp_rank_00_model_states.pt").write_bytes(payload)
        Path(directory, "rng_rank0.pt").write_bytes(b"rng0")
        Path(directory, "rng_rank1.pt").write_bytes(b"rng1")

    return save_ranks


def save(run_dir: Path, step: int, keep_last: int = 2, save_ranks=None) -> Path:
    state = {"wandb_id": "abc", "data_cursor": step * 2, "config": CONFIG}
    return ckpt.save_checkpoint(run_dir, step, state, save_ranks or write_ranks(), keep_last)


def test_save_writes_a_manifest_that_verifies_and_round_trips_the_driver_state(tmp_path):
    path = save(tmp_path, 1)
    manifest = ckpt.read_manifest(path)
    listed = {entry["path"]: entry["size"] for entry in manifest["files"]}
    assert listed == {"deepspeed/mp_rank_00_model_states.pt": 700, "rng_rank0.pt": 4, "rng_rank1.pt": 4,
                      "driver_state.json": (path / "driver_state.json").stat().st_size}
    ckpt.verify_checkpoint(path)
    state = ckpt.load_driver_state(path)
    assert (state["step"], state["data_cursor"], state["wandb_id"]) == (1, 2, "abc")
    assert state["config"] == CONFIG and set(state["rng"]) == {"format", "python", "numpy", "torch", "cuda"}


def test_verification_names_a_truncated_file_and_latest_skips_that_checkpoint(tmp_path):
    save(tmp_path, 1)
    damaged = save(tmp_path, 2)
    weights = damaged / "deepspeed" / "mp_rank_00_model_states.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # what a full disk or a killed copy leaves
    with pytest.raises(ckpt.CheckpointError, match="deepspeed/mp_rank_00_model_states.pt has 100 bytes"):
        ckpt.verify_checkpoint(damaged)
    assert ckpt.latest_checkpoint(tmp_path).name == "step_000001"  # `latest` names step 2, which fails the size check
    with pytest.raises(ckpt.CheckpointError, match="has 100 bytes"):
        plan_resume(str(damaged), tmp_path, "smoke")  # an explicitly named damaged checkpoint is an error


def test_full_verification_catches_a_same_size_corruption_the_fast_check_misses(tmp_path):
    path = save(tmp_path, 1)
    rng = path / "rng_rank1.pt"
    rng.write_bytes(b"RNG1")
    ckpt.verify_checkpoint(path, hashes=False)
    with pytest.raises(ckpt.CheckpointError, match="rng_rank1.pt has sha256"):
        ckpt.verify_checkpoint(path)


def test_verification_names_a_missing_file_and_a_missing_manifest(tmp_path):
    path = save(tmp_path, 1)
    (path / "rng_rank0.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match="rng_rank0.pt listed in manifest.json is missing"):
        ckpt.verify_checkpoint(path)
    (path / ckpt.MANIFEST).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no manifest.json"):
        ckpt.verify_checkpoint(path)
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_a_writer_that_fails_mid_write_leaves_the_previous_checkpoint_usable(tmp_path):
    save(tmp_path, 1)

    def failing_ranks(directory: str) -> None:
        Path(directory, "rng_rank0.pt").write_bytes(b"half")
        raise RuntimeError("rank 1 died")

    with pytest.raises(RuntimeError, match="rank 1 died"):
        save(tmp_path, 2, save_ranks=failing_ranks)
    root = ckpt.checkpoints_dir(tmp_path)
    assert (root / "latest").read_text() == "step_000001"
    assert not (root / "step_000002").exists()
    assert not list(root.glob(".tmp-*")), "a failed save removes its own temp folder"
    assert ckpt.latest_checkpoint(tmp_path) == root / "step_000001"
    ckpt.verify_checkpoint(root / "step_000001")
    save(tmp_path, 2)
    assert ckpt.latest_checkpoint(tmp_path) == root / "step_000002"


def test_a_save_keeps_the_temp_folder_of_a_live_writer_and_drops_a_dead_ones(tmp_path):
    root = ckpt.checkpoints_dir(tmp_path)
    root.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = root / f".tmp-step_000005-{sleeper.pid}"
        live.mkdir()
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = root / f".tmp-step_000004-{gone.stdout.strip()}"
        dead.mkdir()
        legacy = root / ".tmp-step_000003"  # written before temp folders carried the pid
        legacy.mkdir()
        save(tmp_path, 1)
        assert live.is_dir() and not dead.exists() and not legacy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from rl.run import checkpoint as ckpt

    run_dir = Path(sys.argv[1])
    def ranks(directory):
        Path(directory, "rng_rank0.pt").write_bytes(b"x" * 1000)
    ckpt.save_checkpoint(run_dir, 1, {{"config": {{}}}}, ranks, 2)

    def slow_ranks(directory):
        Path(directory, "rng_rank0.pt").write_bytes(b"partial")
        Path(run_dir, "writing").touch()  # tells the test the write is in progress
        time.sleep(60)
    ckpt.save_checkpoint(run_dir, 2, {{"config": {{}}}}, slow_ranks, 2)
    """
)


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint_and_latest(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(repo=str(REPO)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    process = subprocess.Popen([sys.executable, str(script), str(run_dir)])
    try:
        deadline = time.time() + 60
        while not (run_dir / "writing").exists():
            assert process.poll() is None, f"writer exited early with {process.returncode}"
            assert time.time() < deadline, "the writer never reached the second checkpoint"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    root = ckpt.checkpoints_dir(run_dir)
    assert (root / f".tmp-step_000002-{process.pid}").is_dir()  # the killed write, never renamed into place
    assert (root / "latest").read_text() == "step_000001"
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest == root / "step_000001"
    ckpt.verify_checkpoint(latest)
    assert plan_resume(str(run_dir), tmp_path / "elsewhere", "smoke", (tmp_path,)) == ResumePlan(
        latest, run_dir, f"resuming from {latest}")
    save(run_dir, 2)  # the next save drops the dead writer's temp folder
    assert not list(root.glob(".tmp-*"))


def test_keep_last_prunes_older_checkpoints_and_removes_an_abandoned_timeline(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step, keep_last=2)
    root = ckpt.checkpoints_dir(tmp_path)
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000003", "step_000004"]
    # Resuming from step 3 and saving step 4 again replaces the old step 4 (no stale copy left behind)...
    save(tmp_path, 4, keep_last=2, save_ranks=write_ranks(b"new"))
    assert (root / "step_000004" / "deepspeed" / "mp_rank_00_model_states.pt").read_bytes() == b"new"
    assert not list(root.glob(".old-*"))
    # ...and a run resumed from step 3 that saves step 3 drops the abandoned step 4, so `latest` can't jump to it.
    save(tmp_path, 3, keep_last=2)
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000003"]
    assert ckpt.latest_checkpoint(tmp_path) == root / "step_000003"


def test_keep_last_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep_last must be >= 1, got 0"):
        save(tmp_path, 1, keep_last=0)


def _changed(**changes) -> dict:
    import copy

    config = copy.deepcopy(CONFIG)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def test_config_differences_lists_every_changed_leaf_with_both_values():
    current = _changed(algo__kl_coef=0.1, seed=3, rollout__stop=["</OUTPUT>"])
    del current["reward"]
    assert ckpt.config_differences(CONFIG, current) == [
        "algo.kl_coef: checkpoint 0.05, now 0.1",
        "reward.kind: checkpoint 'rule', now '<absent>'",
        "rollout.stop: checkpoint [], now ['</OUTPUT>']",
        "seed: checkpoint 0, now 3",
    ]


@pytest.mark.parametrize("field, value", [
    ("model__path", "/models/other"), ("algo__lr", 1e-5), ("algo__group_size", 4), ("rollout__prompts_per_step", 4),
    ("rollout__max_new_tokens", 32), ("setting__name", "animal_welfare"), ("data__source", "advbench"), ("seed", 1),
    ("reward__kind", "rm"),
])
def test_resume_is_refused_when_a_run_changing_field_differs(field, value):
    dotted = field.replace("__", ".")
    with pytest.raises(ckpt.ResumeConfigError, match=rf"{dotted}: checkpoint .*, now {value!r}"):
        ckpt.check_resume_compatible(CONFIG, _changed(**{field: value}))


def test_resume_is_allowed_when_only_run_invariant_fields_differ():
    current = _changed(total_steps=10, eval__every=5, logger__wandb=False, ckpt__keep_last=5, ray__address="auto",
                       run_dir="/runs/b", resume="true", rollout__sync_timeout_s=60.0, hardware__device="cuda")
    allowed = ckpt.check_resume_compatible(CONFIG, current)
    assert len(allowed) == 9 and "total_steps: checkpoint 3, now 10" in allowed


def test_refusal_names_every_offending_field_and_extra_allowed_prefixes_are_honoured():
    current = _changed(algo__kl_coef=0.1, seed=5, total_steps=9)
    with pytest.raises(ckpt.ResumeConfigError) as err:
        ckpt.check_resume_compatible(CONFIG, current)
    assert "algo.kl_coef: checkpoint 0.05, now 0.1" in str(err.value) and "seed: checkpoint 0, now 5" in str(err.value)
    assert "total_steps" not in str(err.value)
    assert len(ckpt.check_resume_compatible(CONFIG, current, allow=("algo.kl_coef", "seed"))) == 3


# ---- data order across a resume (rl/run/data_order.py is a pure function of (seed, step))
# -----------------------------
def _run_steps(n_items: int, per_step: int, seed: int, first_step: int, total_steps: int) -> list[list[int]]:
    return [step_indices(n_items, per_step, seed, step) for step in range(first_step, total_steps + 1)]


@pytest.mark.parametrize("n_items, per_step, checkpoint_step", [
    (6, 2, 3),  # checkpoint exactly at the end of epoch 0 (6 items / 2 per step)
    (6, 2, 2),  # mid-epoch
    (5, 2, 2),  # mid-epoch, and the next step straddles the epoch boundary
    (4, 4, 1),  # one step per epoch
])
def test_a_resumed_run_sees_the_uninterrupted_data_order(tmp_path, n_items, per_step, checkpoint_step):
    total_steps, seed = 7, 11
    uninterrupted = _run_steps(n_items, per_step, seed, 1, total_steps)
    # The run before the interruption, then the resume: the first step comes from the checkpoint's driver state.
    before = _run_steps(n_items, per_step, seed, 1, checkpoint_step)
    path = ckpt.save_checkpoint(tmp_path, checkpoint_step, {"data_cursor": checkpoint_step * per_step},
                                write_ranks(), keep_last=1)
    resumed_from = ckpt.load_driver_state(ckpt.latest_checkpoint(tmp_path))["step"]
    after = _run_steps(n_items, per_step, seed, resumed_from + 1, total_steps)
    assert path.name == ckpt.step_dir_name(checkpoint_step)
    assert len(after) == total_steps - checkpoint_step > 0  # a resume at an epoch end still trains its steps
    assert before + after == uninterrupted
    # Every epoch of the uninterrupted order is a permutation (each request once per epoch).
    flat = [i for step in uninterrupted for i in step]
    for epoch in range(len(flat) // n_items):
        assert sorted(flat[epoch * n_items : (epoch + 1) * n_items]) == list(range(n_items))
