"""rollout.weight_sync: which path each device and placement gets, and the one combination that cannot work."""
from __future__ import annotations

import pytest

from rl.workers.weight_sync import engine_extension_kwargs, resolve_weight_sync
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
