"""The memory plan (rl/workers/memory_plan.py, rl/workers/model_size.py): parameter counts against real models and
published sizes, the per-role formulas against hand-computed cases, the README's preset table, and the dry run."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from rl.config import load_config, register_schema
from rl.workers.memory_plan import (
    Learner, PlanInputs, config_plan_report, learner_parts, plan_for_config, plan_memory,
)
from rl.workers.model_size import ModelShape, ModelSize, ModelSizeError, model_size
from rl.workers.preset_table import PRESETS, preset_params_billion, preset_table
from tests.train_runs import HANG_GUARD_S, REPO, TRAIN

register_schema()

# Published config.json shapes (hidden, intermediate, layers, heads, kv heads, vocab) and parameter counts.
PUBLISHED = {
    "llama3_8b": (dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256), 8_030_261_248),
    "llama3_70b": (dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8, vocab_size=128256), 70_553_706_496),
    "qwen2_5_32b": (dict(model_type="qwen2", hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                         num_attention_heads=40, num_key_value_heads=8, vocab_size=152064), 32_763_876_352),
}


def _size(params: float, adapter: int = 0, shape=None) -> ModelSize:
    return ModelSize(int(params), adapter, shape, "test")


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_the_shape_count_gives_the_published_size_and_the_preset_rounds_it(preset):
    config, published = PUBLISHED[preset]
    assert ModelShape.from_config(config).params() == published
    assert preset_params_billion(preset) == round(published / 1e9, 2)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_shape_count_equals_the_real_models_parameters(arch, tmp_path):
    """A small model of each layout, built by transformers: tied embeddings (Llama here), q/k/v biases (Qwen2)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch](
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=arch == "llama")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    config.save_pretrained(tmp_path)
    size = model_size(str(tmp_path), None)
    assert size.params == sum(p.numel() for p in model.parameters())
    assert size.shape is not None and "config.json" in size.source


def test_lora_adapter_params_are_rank_times_in_plus_out_of_each_target():
    shape = ModelShape.from_config(PUBLISHED["llama3_8b"][0])
    # q_proj 4096 -> 4096, v_proj 4096 -> 1024: 8 x (8192 + 5120) per layer, 32 layers
    assert shape.lora_params(8, ["q_proj", "v_proj"]) == 32 * 8 * (8192 + 5120)
    # all-linear adds k_proj (4096+1024), o_proj (4096+4096) and the MLP's 3 x (4096+14336)
    assert shape.lora_params(16, ["all-linear"]) == 32 * 16 * (8192 + 5120 + 5120 + 8192 + 3 * 18432)
    # without a shape the conservative rule of thumb (rank x params / 3000) stays above the exact count
    assert model_size("", 8.03, 16).adapter_params > shape.lora_params(16, ["all-linear"])


def test_a_size_without_config_json_or_params_billion_names_the_field():
    with pytest.raises(ModelSizeError, match=r"model\.path='org/model' has no config\.json: set model\.params_billion"):
        model_size("org/model", None)
    assert model_size("org/model", 8.03).params == 8_030_000_000


@pytest.mark.parametrize("stage, offload, expected", [
    # 1e9 trained params, bf16, 4 ranks: weights 2 GB, gradients 2 GB, Adam 12 GB before sharding
    (0, False, {"weights": 2, "gradients": 2, "Adam": 12}),
    (1, False, {"weights": 2, "gradients": 2, "Adam": 3}),
    (2, False, {"weights": 2, "gradients": 0.5, "Adam": 3}),
    # ZeRO-3: a quarter of the weights resident, the other 0.75e9 gathered (under the 1e9 live cap) while computing
    (3, False, {"weights": 0.5, "gathered layers": 1.5, "gradients": 0.5, "Adam": 3}),
    # offload: weights and Adam in CPU memory; all 1e9 gathered (at the cap)
    (3, True, {"weights": 0, "gathered layers": 2, "gradients": 0.5, "Adam": 0}),
])
def test_learner_bytes_per_param_by_zero_stage(stage, offload, expected):
    parts = learner_parts(10**9, 0, 2, Learner(4, stage, offload_optimizer=offload, offload_params=offload))
    assert parts == pytest.approx(expected)


def test_fp32_lora_and_reference_accounting():
    # fp32: 4 B weights, 4 B gradients, Adam moments 8 B (the fp32 weights are the master)
    assert learner_parts(10**9, 0, 4, Learner(1, 0)) == pytest.approx({"weights": 4, "gradients": 4, "Adam": 8})
    # LoRA: 1e7 adapter params trained on a frozen 1e9 base: the base costs only its bf16 weights
    assert learner_parts(10**7, 10**9, 2, Learner(1, 0)) == pytest.approx(
        {"weights": 2.02, "gradients": 0.02, "Adam": 0.12})
    # the reference copy is whole on every rank below ZeRO-3, sharded with it
    assert learner_parts(10**9, 0, 2, Learner(4, 2), 10**9)["reference"] == pytest.approx(2)
    assert learner_parts(10**9, 0, 2, Learner(4, 3), 10**9)["reference"] == pytest.approx(0.5)


def test_an_8b_policy_needs_zero3_and_three_gpus_with_its_reference():
    """8.03e9 x 16 B = 128.5 GB of training state + 16.1 GB reference, over N ranks, + 2 GB gathered <= 64 GB."""
    inputs = PlanInputs(_size(8.03e9), Learner(3, 3), reference=True)
    policy = plan_memory(inputs).roles[0]
    assert policy.fewest_gpus == 3 and policy.fits and policy.gb == pytest.approx(144.54 / 3 + 2, abs=0.01)
    unsharded = plan_memory(PlanInputs(_size(8.03e9), Learner(8, 0))).roles[0]
    assert unsharded.fewest_gpus is None and not unsharded.fits  # ZeRO-0 holds all 144.5 GB whatever the rank count
    lora = plan_memory(PlanInputs(_size(8.03e9, adapter=42_000_000), Learner(1, 0))).roles[0]
    assert lora.fewest_gpus == 1 and "reference" not in lora.parts  # the base with the adapter off is the reference


def test_engine_kv_cache_and_the_tensor_parallel_size_it_needs():
    # 8.03B bf16 = 16.06 GB of weights; gpu_memory_utilization 0.3 of 80 GB = 24 GB: 7.94 GB of KV cache >= 4 GB
    engine = plan_memory(PlanInputs(_size(8.03e9), Learner(1, 0), gpu_memory_utilization=0.3)).roles[-1]
    assert engine.fits and engine.fewest_gpus == 1 and engine.parts["KV cache"] == pytest.approx(7.94)
    # 0.2 = 16 GB: nothing left at TP 1; at TP 2 each GPU holds 8.03 GB of weights and 7.97 GB of cache
    tight = plan_memory(PlanInputs(_size(8.03e9), Learner(1, 0), gpu_memory_utilization=0.2)).roles[-1]
    assert not tight.fits and tight.fewest_gpus == 2
    # with the shape, one max_model_len sequence: 2 x 32 layers x 8 kv heads x 128 x 2 B = 128 KiB per token
    shape = ModelShape.from_config(PUBLISHED["llama3_8b"][0])
    assert shape.kv_bytes_per_token(2) == 131072
    long = plan_memory(PlanInputs(_size(8.03e9, shape=shape), Learner(1, 0), gpu_memory_utilization=0.21,
                                  max_model_len=131072)).roles[-1]  # 16.8 GB: 0.74 GB of cache, 17.2 GB needed
    assert not long.fits and long.fewest_gpus == 2


def test_colocated_ranks_give_the_engine_its_share_and_the_gpu_count_is_the_larger_pool():
    split = plan_memory(PlanInputs(_size(1e9), Learner(2, 0), n_engines=2, tensor_parallel_size=2))
    assert split.total_gpus == 2 + 4
    colocated = plan_memory(PlanInputs(_size(1e9), Learner(2, 0), n_engines=2, tensor_parallel_size=2,
                                       gpu_memory_utilization=0.3, colocated=True))
    assert colocated.total_gpus == 4 and "limit 40.0 GB" in colocated.roles[0].note  # 80 x (1 - 0.2 - 0.3)


def test_the_reward_model_holds_its_weights_in_its_own_dtype_on_its_gpus_or_on_cpu():
    on_gpu = plan_memory(PlanInputs(_size(1e9), Learner(1, 0), reward_model=_size(1.5e9), reward_model_bytes=4,
                                    reward_model_gpus=0.5))
    rm = on_gpu.roles[-1]
    assert rm.parts == {"weights": pytest.approx(6.0)} and rm.fits and "limit 32.0 GB" in rm.note  # half of 64 GB
    assert on_gpu.total_gpus == 1 + 1 + 1  # policy, engine, the reward model's half GPU rounded up
    on_cpu = plan_memory(PlanInputs(_size(1e9), Learner(1, 0), reward_model=_size(1.5e9))).roles[-1]
    assert on_cpu.gb == 0 and "on CPU (reward.rm.num_gpus=0): 6.0 GB of RAM" in on_cpu.note


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_with_the_hub_id_and_plan_from_params_billion(preset, tiny_model_dir):
    cfg = load_config(_compose(f"model={preset}", "trainer.world_size=4", "trainer.zero_stage=3"))
    assert cfg.model.name == preset and cfg.model.path.count("/") == 1
    plan = plan_for_config(cfg, gpu_gb=80)
    assert plan.inputs.size.params == round(preset_params_billion(preset) * 1e9)
    assert plan.roles[0].role == "policy ranks (ZeRO-3)" and "model.params_billion" in plan.describe()
    # the path is overridable, and a local config.json is counted instead of params_billion
    local = plan_for_config(load_config(_compose(f"model={preset}", f"model.path={tiny_model_dir}")), gpu_gb=80)
    assert local.inputs.size.params < 10**8 and "config.json" in local.inputs.size.source


def test_a_hub_id_without_params_billion_has_no_plan_and_says_which_field(tiny_model_dir):
    cfg = load_config(_compose("model.path=org/some-model"))
    entry, text = config_plan_report(cfg)
    assert "set model.params_billion" in entry["error"] and text.startswith("memory plan: none")


def test_readme_holds_the_preset_table_the_plan_computes():
    readme = (REPO / "README.md").read_text()
    assert preset_table() in readme, "README.md's preset table is stale: paste `python -m rl.workers.preset_table`"


def test_dry_run_prints_the_plan_and_writes_it_to_run_info(tiny_model_dir, tmp_path):
    from transformers import AutoConfig

    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, str(TRAIN), "+exp=smoke", f"model.path={tiny_model_dir}", "dry_run=true",
                             "algo=ppo", "trainer.world_size=2", f"run_dir={run_dir}"],
                            cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\[afrl\] memory plan: 0\.\d\dB parameters \(counted from .*config\.json\)", result.stdout)
    assert "policy ranks (ZeRO-2): 2 GPU(s)" in result.stdout and "critic ranks (ZeRO-0): 1 GPU(s)" in result.stdout
    assert re.search(r"vLLM engines \(1 x TP 1\): 1 GPU\(s\), .*; fits from TP 1; fits", result.stdout)
    plan = json.loads((run_dir / "run_info.json").read_text())["memory_plan"]
    shape = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir).to_dict())
    assert plan["params"] == shape.params() and plan["fits"] is True
    assert [r["role"] for r in plan["roles"]] == ["policy ranks (ZeRO-2)", "critic ranks (ZeRO-0)",
                                                 "vLLM engines (1 x TP 1)"]
