"""Gradient checkpointing on vs off with prefix sharing on: peak memory and time of one forward+backward.

    python launch/bench_checkpointing.py                      # 1.3k-token shared prompt, 8 suffixes of 200, 2 rounds
    python launch/bench_checkpointing.py --prefix 6700 --micro-batch 2 --rounds 3

The trainer's path (rl/workers/prefix_sharing.py `SharedPrefix`): the shared prompt runs once, the suffixes run in
micro-batches on top of its keys/values, each micro-batch's log-prob sum is backpropagated, then the prefix's
surrogate loss. Random tokens stand in for text (the cost does not depend on which tokens). Every measurement runs in a
fresh subprocess, so each peak is that variant's own: peak RSS while computing minus the RSS before it (activations,
gradients and the allocator's slack), and the process's lifetime peak (`ru_maxrss`, the loaded model included); wall and
CPU seconds. The variants take turns within each round; the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_MODEL = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "models/smollm2-135m-instruct"
VARIANTS = {"off": False, "on": True}  # gradient checkpointing


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--prefix", type=int, default=1300, help="tokens of the shared prompt")
    parser.add_argument("--suffixes", type=int, default=8)
    parser.add_argument("--suffix-len", type=int, default=200)
    parser.add_argument("--micro-batch", type=int, default=8, help="suffixes per forward (8: one micro-batch)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # the child: measure one variant
    return parser.parse_args()


def measure_one(args: argparse.Namespace, checkpointing: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rl.bench.memory import RssSampler
    from rl.workers.prefix_sharing import SharedPrefix

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    prompt = torch.randint(3, model.config.vocab_size, (args.prefix,))
    ids = torch.cat([prompt.expand(args.suffixes, -1),
                     torch.randint(3, model.config.vocab_size, (args.suffixes, args.suffix_len))], dim=1)
    mask = torch.ones_like(ids)
    start = args.prefix
    sampler = RssSampler(interval_s=0.02)
    before = sampler.process.memory_info().rss
    cpu_before = _cpu_seconds()
    with sampler:
        begin = time.perf_counter()
        prefix = SharedPrefix(model, ids, mask, start)
        for first in range(0, args.suffixes, args.micro_batch):
            rows = slice(first, first + args.micro_batch)
            logprobs, _ = prefix.logprobs(model, ids[rows], mask[rows], start)
            logprobs.sum().backward()
        prefix.surrogate_loss().backward()
        seconds = time.perf_counter() - begin
    return {"checkpointing": checkpointing, "seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu_before,
            "peak_over_start_gib": (sampler.peak_self - before) / 2**30,
            "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "grad_norm": float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))}


def _cpu_seconds() -> float:
    """User + system CPU time of this process: on a shared machine it moves less with the load than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    args = parse_args()
    if args.one:
        print(json.dumps(measure_one(args, VARIANTS[args.one])))
        return
    child = [sys.executable, __file__, *sys.argv[1:]]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        for name in VARIANTS:
            out = subprocess.run([*child, "--one", name], check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {round_index + 1}, checkpointing {name}: {runs[name][-1]}", flush=True)
    load_after = os.getloadavg()
    print(f"\nSmolLM2-135M fp32, prefix sharing on, shared prompt {args.prefix} tokens, {args.suffixes} suffixes of "
          f"{args.suffix_len}, {args.micro_batch} per forward; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print("| gradient checkpointing | wall s per forward+backward, median (all) | CPU s, median (all) | "
          "peak RSS over start, GiB | ru_maxrss, GiB |")
    print("|---|---|---|---|---|")
    for name, results in runs.items():
        seconds, cpu = [r["seconds"] for r in results], [r["cpu_seconds"] for r in results]
        print(f"| {name} | {statistics.median(seconds):.1f} ({', '.join(f'{s:.1f}' for s in seconds)}) | "
              f"{statistics.median(cpu):.1f} ({', '.join(f'{s:.1f}' for s in cpu)}) | "
              f"{max(r['peak_over_start_gib'] for r in results):.2f} | {max(r['max_rss_gib'] for r in results):.2f} |")
    norms = {name: results[0]["grad_norm"] for name, results in runs.items()}
    print(f"gradient norms (the same computation): {norms}")


if __name__ == "__main__":
    main()
