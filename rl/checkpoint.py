"""Atomic checkpoints: everything goes into a temp folder that is renamed into place, so none is ever half-written.

Layout of `<run_dir>/checkpoints/step_000012/`: `deepspeed/` (module, optimizer, scheduler; written by every trainer
rank), `rng_rank<r>.pt` (each rank's RNG states), `driver_state.pt` (step, data cursor, W&B run id, driver RNG states),
`COMPLETE` (written last). `<run_dir>/checkpoints/latest` names the newest complete one.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

COMPLETE = "COMPLETE"


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def driver_rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_driver_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: Path, step: int, driver_state: dict, save_ranks: Callable[[str], None], keep_last: int) -> Path:
    """`save_ranks(tmp_dir)` makes every trainer rank write its part; then the folder is completed and renamed."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a write that was killed
    tmp.mkdir()
    save_ranks(str(tmp))
    torch.save({**driver_state, "step": step, "rng": driver_rng_state()}, tmp / "driver_state.pt")
    (tmp / COMPLETE).write_text(f"{step}\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / "latest", final.name)
    _prune(root, keep_last)
    return final


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(root: Path, keep_last: int) -> None:
    complete = sorted(p for p in root.glob("step_*") if (p / COMPLETE).exists())
    for old in complete[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = checkpoints_dir(run_dir)
    pointer = root / "latest"
    if pointer.exists():
        candidate = root / pointer.read_text().strip()
        if (candidate / COMPLETE).exists():
            return candidate
    complete = sorted(p for p in root.glob("step_*") if (p / COMPLETE).exists())
    return complete[-1] if complete else None


def load_driver_state(checkpoint: Path) -> dict:
    return torch.load(Path(checkpoint) / "driver_state.pt", weights_only=False)


def resolve_resume(resume: str | None, exp_name: str, outputs_root: Path) -> tuple[Path | None, str]:
    """Map the `resume` setting to a checkpoint folder (or None) and a sentence for the log.

    None/false: fresh. true: the newest checkpoint among the runs of `exp_name` under `outputs_root`. A path: a run
    folder (its latest checkpoint) or a checkpoint folder.
    """
    value = "" if resume is None else str(resume).strip()
    if value.lower() in ("", "false", "none", "0"):
        return None, "starting a fresh run"
    if value.lower() == "true":
        runs = [p.parent.parent for p in Path(outputs_root, exp_name).glob("*/checkpoints/latest")]
        found = [c for c in (latest_checkpoint(r) for r in runs) if c is not None]
        if not found:
            return None, f"resume=true but no checkpoint found under {Path(outputs_root, exp_name)}: starting fresh"
        newest = max(found, key=lambda c: (c / COMPLETE).stat().st_mtime)
        return newest, f"resuming from {newest}"
    path = Path(value).expanduser()
    if (path / COMPLETE).exists():
        return path, f"resuming from {path}"
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found, f"resuming from {found}"
    raise FileNotFoundError(f"resume={value!r}: no complete checkpoint there (expected a run folder or a step_* folder)")


def run_dir_of(checkpoint: Path) -> Path:
    return Path(checkpoint).parent.parent
