"""Time one RL step under different Ray layouts (trainer ranks x rollout engines x placement) on the same experiment.

    python launch/bench_layouts.py                                   # 1x1 vs 2x2 split, +exp=helpful_only_cpu, 3 steps
    python launch/bench_layouts.py --layouts 1x1:split 2x2:colocated --steps 4 --extra model.path=...

Each layout is a real `launch/train.py` run (subprocess, its own Ray cluster) without eval or checkpoints; the table
gives the median over the steps after the first (which pays one-off warm-up) of the step time and its phases, read from
the run's metrics.jsonl. Layouts run one after the other, so other load on the machine shows up in all of them alike
only if it is steady: the load average before and after each run is printed with it.
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
PHASES = ("step", "generate", "reward", "update", "sync")


def layout_overrides(layout: str) -> list[str]:
    """'2x2:colocated' -> trainer ranks 2, engines 2, placement colocated (placement defaults to split)."""
    shape, _, placement = layout.partition(":")
    try:
        ranks, engines = (int(x) for x in shape.split("x"))
    except ValueError:
        raise SystemExit(f"--layouts: expected RANKSxENGINES[:split|colocated], got {layout!r}") from None
    return [f"trainer.world_size={ranks}", f"rollout.n_engines={engines}", f"resources.placement={placement or 'split'}"]


def run_layout(layout: str, args, out_dir: Path) -> dict:
    run_dir = out_dir / layout.replace(":", "_")
    command = [sys.executable, str(REPO / "launch" / "train.py"), f"+exp={args.exp}", f"total_steps={args.steps}",
               "eval.at_start=false", "eval.at_end=false", "eval.every=0", "ckpt.every=0", "ckpt.at_end=false",
               "ckpt.every_minutes=0", "logger.progress=false", f"run_dir={run_dir}", *layout_overrides(layout),
               *args.extra]
    load_before = os.getloadavg()[0]
    start = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"layout {layout} failed:\n{result.stderr[-4000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "time/step_s" in r][1:] or [r for r in rows if "time/step_s" in r]
    medians = {p: statistics.median(r.get(f"time/{p}_s", 0.0) for r in steps) for p in PHASES}
    return {"layout": layout, "steps_timed": len(steps), "wall_s": time.time() - start, "load_before": load_before,
            "load_after": os.getloadavg()[0], **medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp", default="helpful_only_cpu")
    parser.add_argument("--layouts", nargs="+", default=["1x1", "2x2"], help="RANKSxENGINES[:split|colocated]")
    parser.add_argument("--steps", type=int, default=3, help="steps per layout; the first is not timed")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every layout")
    parser.add_argument("--out", default="outputs/bench/layouts")
    args = parser.parse_args()
    out_dir = Path(args.out, time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    results = []
    for layout in args.layouts:
        print(f"[layouts] running {layout} ...", flush=True)
        results.append(run_layout(layout, args, out_dir))
    header = f"{'layout':16s}" + "".join(f"{p + ' s':>11s}" for p in PHASES) + f"{'load':>12s}"
    print(header)
    for r in results:
        print(f"{r['layout']:16s}" + "".join(f"{r[p]:11.1f}" for p in PHASES)
              + f"{r['load_before']:6.1f}>{r['load_after']:<5.1f}")
    (out_dir / "layouts.json").write_text(json.dumps(results, indent=2))
    print(f"[layouts] medians over steps 2..{args.steps} of +exp={args.exp}; wrote {out_dir / 'layouts.json'}")


if __name__ == "__main__":
    main()
