"""The CPU counterpart of launch/gpu_check.py, end to end through the launcher: a 2-rank ZeRO-3 LoRA policy whose
weights reach the vLLM engine by the broadcast sync (gloo on CPU: the NCCL path's code) every step, and whose HF
export holds the merged weights under plain HF names."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from rl.run.export import HF_FOLDER
from tests.train_runs import read_jsonl, run_train

pytestmark = pytest.mark.heavy


def test_zero3_lora_two_ranks_sync_by_broadcast_and_export_merged_weights(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "zero3_lora"
    result = run_train(tiny_model_dir, run_dir, "trainer.zero_stage=3", "model.lora.rank=8", "algo.lr=1e-2",
                       "trainer.world_size=2", "rollout.weight_sync=nccl", "ckpt.save_hf=true", "total_steps=2",
                       "eval.at_start=false", "eval.every=0")
    assert "weight sync: broadcast over gloo, 2 members" in result.stdout + result.stderr
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "time/sync_s" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["time/sync_s"]) for r in rows)

    exported = load_file(str(run_dir / HF_FOLDER / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(exported) == set(base) - {"lm_head.weight"}  # plain HF names: no adapters, no base_layer level
    changed = {name for name in exported if not torch.equal(exported[name], base[name].to(exported[name].dtype))}
    assert changed and all(name.endswith("proj.weight") for name in changed)  # adapters on linear layers only
    assert torch.equal(exported["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
