"""Time the weight sync into the engines both ways in one cluster: Ray's object store against the process-group
broadcast (rollout.weight_sync=nccl: nccl on GPU, gloo on CPU), alternating, after one warm-up each.

    python launch/bench_weight_sync.py [--repeats 5] [afrl override ...]

The overrides compose conf/ as launch/train.py does (default: SmolLM2-135M, one engine, one trainer rank); the
cluster is the run's own (rl/workers/cluster.py). After each sync the engine samples greedily, and both paths must give
the same tokens. Prints one table row per path, with the load average around the measurement.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from rl.config import load_config, register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return load_config(hydra_compose(config_name="config", overrides=["rollout.weight_sync=nccl", *overrides]))


def greedy_tokens(cluster, tokenizer) -> list[int]:
    from rollouts.engine import SamplingSpec
    from rollouts.types import FREE_TIER, PromptSpec, Request

    ids = tokenizer("Tell me a story about a cat.", add_special_tokens=False)["input_ids"]
    prompt = PromptSpec(Request("bench", "q"), FREE_TIER, tuple(ids), "")
    return cluster.generate([prompt], SamplingSpec(n=1, max_new_tokens=8, temperature=0.0, max_turns=1))[0].token_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed syncs per path (after one warm-up each)")
    args, overrides = parser.parse_known_args()
    from transformers import AutoTokenizer

    from rl.workers.cluster import start_cluster
    from rl.workers.placement import resolve_hardware

    cfg = compose(overrides)
    hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.dtype)
    model_path = os.path.expanduser(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    cluster = start_cluster(cfg, hardware)
    broadcast = cluster.broadcast
    if broadcast is None:
        raise SystemExit(f"rollout.weight_sync={cfg.rollout.weight_sync} on {hardware.device} gives no broadcast path")
    try:
        load_before = os.getloadavg()
        seconds = {"object_store": [], broadcast.mode: []}
        tokens = {}
        for repeat in range(args.repeats + 1):
            for path in seconds:
                cluster.broadcast = broadcast if path != "object_store" else None
                elapsed = cluster.sync_weights(cfg.rollout.sync_timeout_s)
                if repeat:  # the first round warms up both paths
                    seconds[path].append(elapsed)
                tokens.setdefault(path, greedy_tokens(cluster, tokenizer))
        load_after = os.getloadavg()
    finally:
        cluster.shutdown()
    n_params = parameter_count(model_path)
    print(f"\nmodel {model_path} ({n_params / 1e6:.0f}M parameters, {hardware.dtype}), {cfg.rollout.n_engines} engine(s), "
          f"{hardware.device}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"same greedy tokens after both paths: {len(set(map(tuple, tokens.values()))) == 1}")
    print("| path | median s | min-max s | syncs |\n|---|---|---|---|")
    for path, values in seconds.items():
        label = f"{path} ({broadcast.backend})" if path != "object_store" else path
        print(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} | {len(values)} |")


def parameter_count(model_path: str) -> int:
    import math

    from safetensors import safe_open

    total = 0
    for file in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    return total


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"total {time.time() - start:.0f}s")
