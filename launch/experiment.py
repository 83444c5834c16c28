"""`make train`: the CPU default experiment end to end, each phase announced and timed.

    python launch/experiment.py [key=value ...]     # extra overrides go to the RL phase (launch/train.py)

Phases: fetch the default model; write the planted organism's transcripts; SFT the organism (cached by content);
train the helpful-only reward model (cached); RL on the free tier with the eval hooks, then the report. The organism is
PLANTED: its compliance and alignment-faking rates are fixed by construction, so the run is a known-answer test of the
instrument (does RL raise training compliance, do the eval hooks see AF reasoning rise with it?), not a finding about
a real model. Phase times go to <run_dir>/phases.json.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "helpful_only_cpu"


def phases(run_dir: Path, rl_overrides: list[str]) -> list[tuple[str, list[str]]]:
    """(announcement, command) per phase, in order."""
    python = sys.executable
    return [
        ("fetch the default model (SmolLM2-135M-Instruct, cached)", [python, "launch/fetch_model.py"]),
        ("write the planted organism's transcripts", [python, "launch/make_organism.py"]),
        ("SFT of the planted organism (cached by content)", [python, "launch/sft.py", "+sft=organism"]),
        ("train the helpful-only reward model (cached)", [python, "launch/train_rm.py", "+rm=demo"]),
        ("RL on the free tier, eval hooks in both tiers, report",
         [python, "launch/train.py", f"+exp={EXPERIMENT}", f"run_dir={run_dir}", *rl_overrides]),
    ]


def run_phases(run_dir: Path, rl_overrides: list[str]) -> list[dict]:
    timings = []
    steps = phases(run_dir, rl_overrides)
    for number, (title, command) in enumerate(steps, start=1):
        print(f"\n[afrl] phase {number}/{len(steps)}: {title}\n[afrl] $ {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO)
        seconds = time.monotonic() - started
        timings.append({"phase": title, "seconds": round(seconds, 1), "returncode": result.returncode})
        print(f"[afrl] phase {number}/{len(steps)} took {seconds / 60:.1f} min", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"[afrl] phase {number} ({title}) failed with exit status {result.returncode}")
    return timings


def main(argv: list[str]) -> int:
    run_dir = REPO / "outputs" / EXPERIMENT / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    started = time.monotonic()
    timings = run_phases(run_dir, argv)
    total = time.monotonic() - started
    (run_dir / "phases.json").write_text(json.dumps({"phases": timings, "total_seconds": round(total, 1)}, indent=1)
                                         + "\n")
    print("\n[afrl] phase times")
    for row in timings:
        print(f"  {row['seconds'] / 60:6.1f} min  {row['phase']}")
    print(f"  {total / 60:6.1f} min  total\n[afrl] report: {run_dir / 'report' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
