"""Sharded training on CPU: two real DeepSpeed ranks (gloo) under ZeRO-3 train the policy and the critic like ZeRO-2
does (same losses, gradient norms, KL to the reference and weights, within float tolerance), gather the full weights
for the engines on rank 0, and round-trip a checkpoint of their shards. The reference is sharded too (an
inference-only ZeRO-3 engine). Each run is two processes of tests/workers/zero_ranks.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl.workers.cluster import free_port
from tests.train_runs import HANG_GUARD_S

pytestmark = pytest.mark.heavy
REPO = Path(__file__).resolve().parents[2]
LR = 1e-3


def run_ranks(model_dir: Path, out_dir: Path, stage: int, *extra: str) -> dict:
    out_dir.mkdir()
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, "-m", "tests.workers.zero_ranks", str(rank), str(port), str(stage),
                               str(model_dir), str(out_dir), *extra], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    logs = [process.communicate(timeout=HANG_GUARD_S)[0] for process in ranks]
    for rank, process in enumerate(ranks):
        assert process.returncode == 0, f"ZeRO-{stage} rank {rank} failed:\n{logs[rank][-3000:]}"
    return torch.load(out_dir / "result.pt", weights_only=False)


@pytest.fixture(scope="module")
def zero2(tiny_model_dir, tmp_path_factory):
    return run_ranks(tiny_model_dir, tmp_path_factory.mktemp("zero2") / "run", 2)


@pytest.fixture(scope="module")
def zero3(tiny_model_dir, tmp_path_factory):
    return run_ranks(tiny_model_dir, tmp_path_factory.mktemp("zero3") / "run", 3)


def assert_weights_close(ours: dict, expected: dict) -> None:
    """Adam's first steps are ~lr * sign(g): a gradient entry within rounding of zero can take either sign, so all
    but a handful of entries agree to 1% of lr and none by more than two steps (tests/workers/test_trainer.py)."""
    assert set(ours) == set(expected)
    for name in expected:
        assert ours[name].shape == expected[name].shape, name
        diff = (ours[name].float() - expected[name].float()).abs()
        close = (diff <= 1e-2 * LR).float().mean().item()
        assert close >= 0.999 and diff.max().item() <= 4.01 * LR, (name, close, diff.max().item())


def test_zero3_policy_update_equals_zero2(zero2, zero3):
    assert (zero2["stage"], zero3["stage"]) == (2, 3)
    for key in ("loss", "kl", "grad_norm", "entropy"):
        assert zero3["stats"][key] == pytest.approx(zero2["stats"][key], rel=1e-4, abs=1e-6), key
    assert zero3["stats"]["skipped_update_frac"] == 0.0 and zero3["stats"]["grad_norm"] > 0
    # the sharded reference gives the same KL after the update as the full copy, on both ranks' rows
    for ours, expected in zip(zero3["kl"], zero2["kl"]):
        assert ours["rows"] == expected["rows"]
        torch.testing.assert_close(ours["kl"], expected["kl"], atol=1e-4, rtol=1e-3)
        assert ours["kl"].abs().sum() > 0  # the policy moved away from the reference


def test_zero3_gathers_the_full_hf_named_weights_on_rank_0(zero2, zero3):
    weights = zero3["weights"]
    assert "lm_head.weight" not in weights and "model.embed_tokens.weight" in weights  # tied: vLLM ties it itself
    assert weights["model.embed_tokens.weight"].shape == zero2["weights"]["model.embed_tokens.weight"].shape
    assert_weights_close(weights, zero2["weights"])


def test_zero3_checkpoint_round_trips_the_shards(zero3):
    moved = [name for name in zero3["weights"] if not torch.equal(zero3["weights"][name], zero3["moved"][name])]
    assert moved  # the update after the save changed the weights, so the restore below means something
    for name, tensor in zero3["weights"].items():
        assert torch.equal(zero3["restored"][name], tensor), name


def test_two_zero3_critic_ranks_train_like_zero2(zero2, zero3):
    for key in ("vf_loss", "value_mean", "return_mean"):
        assert zero3["critic"][key] == pytest.approx(zero2["critic"][key], rel=1e-4, abs=1e-6), key
    assert zero3["critic"]["critic_skipped_update_frac"] == 0.0
    for ours, expected in zip(zero3["kl"], zero2["kl"]):
        torch.testing.assert_close(ours["values"], expected["values"], atol=1e-4, rtol=1e-3)
        assert ours["values"].abs().sum() > 0  # the zero-initialised head learned something


def test_zero3_with_optimizer_and_parameter_offload_trains_like_zero2(zero2, tiny_model_dir, tmp_path):
    """trainer.offload_optimizer/offload_params: DeepSpeed's CPU Adam (a JIT-built op) steps the offloaded state."""
    offloaded = run_ranks(tiny_model_dir, tmp_path / "run", 3, "offload")
    for key in ("loss", "kl", "grad_norm"):
        assert offloaded["stats"][key] == pytest.approx(zero2["stats"][key], rel=1e-4, abs=1e-6), key
    assert_weights_close(offloaded["weights"], zero2["weights"])
    assert offloaded["critic"]["vf_loss"] == pytest.approx(zero2["critic"]["vf_loss"], rel=1e-4, abs=1e-6)


# ---- LoRA under ZeRO-3: adapters sharded like any parameter, merged weights gathered for the engines ----------------
@pytest.fixture(scope="module")
def zero2_lora(tiny_model_dir, tmp_path_factory):
    return run_ranks(tiny_model_dir, tmp_path_factory.mktemp("zero2_lora") / "run", 2, "lora")


@pytest.fixture(scope="module")
def zero3_lora(tiny_model_dir, tmp_path_factory):
    return run_ranks(tiny_model_dir, tmp_path_factory.mktemp("zero3_lora") / "run", 3, "lora")


def test_zero3_lora_trains_like_zero2_lora(zero2_lora, zero3_lora):
    for key in ("loss", "kl", "grad_norm"):
        assert zero3_lora["stats"][key] == pytest.approx(zero2_lora["stats"][key], rel=1e-4, abs=1e-6), key
    for ours, expected in zip(zero3_lora["kl"], zero2_lora["kl"]):
        # the reference is the policy with its adapters off: it moved away from it, by the same KL as under ZeRO-2
        torch.testing.assert_close(ours["kl"], expected["kl"], atol=1e-4, rtol=1e-3)
        assert ours["kl"].abs().sum() > 0
        torch.testing.assert_close(ours["values"], expected["values"], atol=1e-4, rtol=1e-3)
    assert zero3_lora["critic"]["vf_loss"] == pytest.approx(zero2_lora["critic"]["vf_loss"], rel=1e-4, abs=1e-6)


def test_zero3_lora_gathers_merged_hf_weights_and_round_trips_adapter_checkpoints(zero2, zero2_lora, zero3_lora):
    weights = zero3_lora["weights"]
    assert set(weights) == set(zero2["weights"])  # plain HF names: no lora_A/lora_B, no base_layer level
    assert not any("lora" in name for name in weights)
    assert_weights_close(weights, zero2_lora["weights"])
    moved = [name for name in weights if not torch.equal(weights[name], zero3_lora["moved"][name])]
    assert moved and all("proj" in name for name in moved)  # only adapted (linear) weights change
    for name, tensor in weights.items():
        assert torch.equal(zero3_lora["restored"][name], tensor), name
