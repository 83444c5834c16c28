"""Run `launch/train.py` as a subprocess (as a user would) and read what it wrote."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rollouts.jsonl import jsonl_rows

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "launch" / "train.py"


# How long a test waits for a child run (or a server, a placement) before calling it hung. A bound against hangs, not a
# speed check: on a machine shared with another heavy job, start-up alone runs several times slower than when idle.
HANG_GUARD_S = 1800

# Set in this process by the in-process DeepSpeed tests; a child that inherits them joins their (gone) process group.
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def train_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in DISTRIBUTED_ENV}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env["WANDB_MODE"] = "offline"
    return env


def train_command(model_dir: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(TRAIN), "+exp=smoke", f"model.path={model_dir}", f"run_dir={run_dir}", *overrides]


def run_train(model_dir: Path, run_dir: Path, *overrides: str, timeout: int = HANG_GUARD_S) -> subprocess.CompletedProcess:
    result = subprocess.run(
        train_command(model_dir, run_dir, *overrides), cwd=REPO, env=train_env(), capture_output=True, text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in jsonl_rows(Path(path), ValueError)]
