"""rollout.weight_sync: which path each device and placement gets, and the one combination that cannot work."""
from __future__ import annotations

import pytest

from rl.workers.weight_sync import engine_extension_kwargs, resolve_weight_sync, wait_for_members
from rollouts.weight_receiver import WORKER_EXTENSION


@pytest.mark.parametrize("setting, device, placement, engines, ranks, tp, expected", [
    ("auto", "cpu", "split", 1, 1, 1, "object_store"),  # the CPU default run is unchanged
    ("auto", "cpu", "colocated", 2, 2, 1, "object_store"),
    ("auto", "cuda", "split", 2, 1, 1, "broadcast"),
    ("auto", "cuda", "split", 2, 1, 4, "broadcast"),
    ("auto", "cuda", "colocated", 2, 2, 1, "cuda_ipc"),
    ("auto", "cuda", "colocated", 3, 2, 1, "object_store"),  # engine 2 shares its GPU with no trainer rank
    ("auto", "cuda", "colocated", 1, 1, 2, "object_store"),  # a TP engine spans GPUs no trainer rank is on
    ("nccl", "cpu", "split", 1, 1, 1, "broadcast"),  # gloo: the same broadcast code, runnable without a GPU
    ("nccl", "cpu", "colocated", 2, 2, 1, "broadcast"),
    ("nccl", "cuda", "split", 1, 1, 1, "broadcast"),
    ("object_store", "cuda", "split", 1, 1, 1, "object_store"),
])
def test_the_weight_sync_path_per_device_and_placement(setting, device, placement, engines, ranks, tp, expected):
    assert resolve_weight_sync(setting, device, placement, engines, ranks, tp) == expected


def test_nccl_between_a_trainer_and_an_engine_on_one_gpu_is_refused_naming_the_fields():
    with pytest.raises(ValueError, match=r"rollout.weight_sync=nccl: with resources.placement=colocated .*weight_sync=auto"):
        resolve_weight_sync("nccl", "cuda", "colocated", 1, 1, 1)
    with pytest.raises(ValueError, match="rollout.weight_sync='ray'"):
        resolve_weight_sync("ray", "cpu", "split", 1, 1, 1)


def test_only_receiving_engines_load_the_worker_extension():
    assert engine_extension_kwargs("object_store") == {}
    assert engine_extension_kwargs("broadcast") == engine_extension_kwargs("cuda_ipc") == {
        "worker_extension_cls": WORKER_EXTENSION}


def test_every_gpu_check_variant_is_a_valid_config_taking_the_path_it_names(tiny_model_dir):
    """launch/gpu_check.py runs on a GPU machine only: its overrides are checked here, against the config schema and
    the path each variant is meant to measure on CUDA."""
    from hydra import compose, initialize_config_dir

    from launch.gpu_check import COMMON, REPO, VARIANTS
    from rl.config import load_config, register_schema

    register_schema()
    expected = {"ipc": "cuda_ipc", "object_store": "object_store", "nccl": "broadcast"}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name, overrides in VARIANTS.items():
            cfg = load_config(compose(config_name="config",
                                      overrides=[*COMMON, *overrides, f"model.path={tiny_model_dir}"]))
            assert cfg.trainer.zero_stage == 3 and cfg.model.lora.rank > 0
            path = resolve_weight_sync(cfg.rollout.weight_sync, "cuda", cfg.resources.placement, cfg.rollout.n_engines,
                                       cfg.trainer.world_size, cfg.rollout.tensor_parallel_size)
            assert path == expected[name], name


def test_the_driver_names_the_member_that_fails_or_never_finishes(local_ray):
    import time

    ray = local_ray

    @ray.remote(num_cpus=0)
    class Member:
        def work(self, seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        def fail(self):
            raise TimeoutError("rollout engine 1 (worker 0, weight-sync rank 2): weight broadcast of bucket 3 ...")

    fast, slow, failing = Member.remote(), Member.remote(), Member.remote()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"weight broadcast into 1 engine\(s\): rollout engine 0 still busy after 2s"):
        wait_for_members({fast.work.remote(0): "trainer rank 0", slow.work.remote(60): "rollout engine 0"}, 2,
                         "weight broadcast into 1 engine(s)")
    assert time.monotonic() - start < 20
    with pytest.raises(TimeoutError, match="rollout engine 1 .*bucket 3"):  # the member's own error, at once
        wait_for_members({failing.fail.remote(): "rollout engine 1", Member.remote().work.remote(60): "trainer rank 0"},
                         120, "weight broadcast into 2 engine(s)")
    assert time.monotonic() - start < 40


@pytest.mark.heavy
def test_a_zero3_lora_run_with_two_ranks_syncs_by_broadcast_and_exports_merged_weights(tiny_model_dir, tmp_path):
    """rollout.weight_sync=nccl on CPU (the CPU counterpart of launch/gpu_check.py): the launcher forms one gloo group
    of trainer rank 0 and the engine's worker, and every step's sync streams the weights of a 2-rank ZeRO-3 LoRA policy
    through it (rank 1 takes part in the module-by-module gather); the HF export holds the merged weights under plain
    HF names."""
    import math

    import torch
    from safetensors.torch import load_file

    from rl.run.export import HF_FOLDER
    from tests.train_runs import read_jsonl, run_train

    run_dir = tmp_path / "broadcast"
    result = run_train(tiny_model_dir, run_dir, "rollout.weight_sync=nccl", "trainer.world_size=2",
                       "trainer.zero_stage=3", "model.lora.rank=8", "algo.lr=1e-2", "ckpt.save_hf=true",
                       "total_steps=2", "eval.at_start=false", "eval.every=0")
    assert "weight sync: broadcast over gloo, 2 members" in result.stdout + result.stderr
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "time/sync_s" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["time/sync_s"]) for r in rows)

    exported = load_file(str(run_dir / HF_FOLDER / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(exported) == set(base) - {"lm_head.weight"}  # no adapter tensors, no base_layer level
    changed = {name for name in exported if not torch.equal(exported[name], base[name].to(exported[name].dtype))}
    assert changed and all(name.endswith("proj.weight") for name in changed)  # adapters sit on linear layers only
