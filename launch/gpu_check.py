"""The GPU check of issue 20's scale features, as one short script for a GPU machine: RL steps of a ~1.5B model with
ZeRO-3 and a LoRA policy, once per weight-sync path, through the real launcher (launch/train.py), printing each run's
step time and weight-sync time from its metrics.

    python launch/gpu_check.py [--shape qwen2.5-1.5b] [--tokenizer DIR] [--work DIR] [--variants ...] [override ...]

The model is random (rl/bench/random_model.py: the shape's sizes, the tokenizer from --tokenizer), so the machine
needs no download; only the timings mean anything. Variants (each a set of launcher overrides, run in turn):
- ipc: resources.placement=colocated, rollout.weight_sync=auto -> CUDA IPC (trainer and engine share the GPU)
- object_store: the same with rollout.weight_sync=object_store (the path IPC and NCCL replace)
- nccl: resources.placement=split, rollout.weight_sync=nccl (needs 2 GPUs: NCCL cannot join two ranks on one GPU)
Extra `key=value` arguments go to every run (e.g. trainer.zero_stage=2 model.lora.rank=0 for the full-weight case).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_TOKENIZER = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "models" / "smollm2-135m-instruct"

# One ZeRO-3 + LoRA policy; two steps so the second is timed warm; no eval, no checkpoint: only the step is measured.
COMMON = ["+exp=smoke", "total_steps=3", "trainer.zero_stage=3", "model.lora.rank=16", "eval.at_start=false",
          "eval.at_end=false", "eval.every=0", "ckpt.every=0", "ckpt.every_minutes=0", "rollout.max_model_len=2048"]
VARIANTS = {
    "ipc": ["resources.placement=colocated", "rollout.weight_sync=auto"],
    "object_store": ["resources.placement=colocated", "rollout.weight_sync=object_store"],
    "nccl": ["resources.placement=split", "rollout.weight_sync=nccl"],
}


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def run_variant(name: str, model_dir: Path, work: Path, extra: list[str]) -> dict:
    run_dir = work / f"run_{name}"
    command = [sys.executable, str(REPO / "launch" / "train.py"), *COMMON, *VARIANTS[name], f"model.path={model_dir}",
               f"run_dir={run_dir}", *extra]
    print(f"[gpu_check] {name}: {' '.join(command[1:])}", flush=True)
    start = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    log = run_dir / "gpu_check.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        return {"variant": name, "error": f"exit {result.returncode}; last lines:\n{result.stderr[-2500:]}"}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "time/step_s" in r]
    warm = steps[1:] or steps  # the first step compiles and allocates
    sync_line = next((line for line in (result.stdout + result.stderr).splitlines() if "weight sync:" in line), "")
    return {"variant": name, "wall_s": time.time() - start, "steps": len(steps),
            "step_s": statistics.median(r["time/step_s"] for r in warm),
            "sync_s": statistics.median(r["time/sync_s"] for r in warm),
            "update_s": statistics.median(r.get("time/update_s", float("nan")) for r in warm),
            "group": sync_line.split("weight sync:", 1)[-1].strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-1.5b", help="a shape of rl/bench/random_model.py")
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="folder with the tokenizer files")
    parser.add_argument("--work", default=str(REPO / "outputs" / "gpu_check"), help="model and run folders")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args, extra = parser.parse_known_args()
    from rl.bench.random_model import build_random_model

    work = Path(args.work)
    model_dir = work / f"random_{args.shape}"
    if not (model_dir / "config.json").exists():
        build_random_model(args.shape, args.tokenizer, model_dir, dtype="bfloat16",
                           device="cuda" if gpu_count() else "cpu")
    gpus = gpu_count()
    results = []
    for name in args.variants:
        if name == "nccl" and gpus < 2:
            results.append({"variant": name, "error": f"skipped: {gpus} GPU(s); NCCL needs the engine on a GPU of "
                                                      f"its own"})
            continue
        results.append(run_variant(name, model_dir, work, extra))
    print(f"\n{args.shape} (random weights), ZeRO-3 + LoRA rank 16, {gpus} GPU(s); medians over the warm steps")
    print("| weight sync | step s | update s | sync s | group |\n|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | {r['error']} | | | |")
        else:
            print(f"| {r['variant']} | {r['step_s']:.2f} | {r['update_s']:.2f} | {r['sync_s']:.3f} | {r['group']} |")
    (work / "gpu_check.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
