"""Two DeepSpeed ranks (gloo) and two vLLM-CPU engines on one machine, through the real launcher."""
from __future__ import annotations

import math

import pytest

from tests.train_runs import read_jsonl, run_train

pytestmark = pytest.mark.heavy


def test_two_trainer_ranks_and_two_engines(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "multi"
    run_train(tiny_model_dir, run_dir, "trainer.world_size=2", "rollout.n_engines=2", "total_steps=2",
              "eval.at_start=false")
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["train/loss"]) and r["time/sync_s"] > 0 for r in rows)
    deepspeed_dir = run_dir / "checkpoints" / "step_000002" / "deepspeed"
    # ZeRO-2 shards the optimizer state over the ranks: one shard per rank; every rank saved its RNG state.
    assert sorted(p.name for p in deepspeed_dir.glob("*optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    ]
    assert (deepspeed_dir.parent / "rng_rank0.pt").exists() and (deepspeed_dir.parent / "rng_rank1.pt").exists()
