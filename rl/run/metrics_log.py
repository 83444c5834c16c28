"""Where numbers go: a local `metrics.jsonl` in the run folder (always) and W&B (offline by default).

Nothing secret reaches either: the config logged to W&B is the resolved TrainConfig, which holds only the *names* of
environment variables for API keys, never their values.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from rollouts.jsonl import jsonl_lines


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no nan/inf; readers treat null as "no value"
    return value


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop rows with a step after `step` (logged by an interrupted process before a resume): one consistent history.

    A last row cut off mid-write by the crash is dropped with a warning; a bad row before it is an error naming it.
    """
    if not path.exists():
        return
    kept = [line for _, line, row in jsonl_lines(path, ValueError, drop_torn_tail=True) if row.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class MetricsLogger:
    def __init__(self, run_dir: Path, logger_cfg, run_name: str, config_dict: dict, wandb_id: str | None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.run = None
        self.wandb_id = wandb_id
        if logger_cfg.wandb and logger_cfg.wandb_mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project=logger_cfg.project, group=logger_cfg.group, name=run_name, id=wandb_id, resume="allow",
                mode=logger_cfg.wandb_mode, dir=str(run_dir), config=config_dict,
            )
            self.wandb_id = self.run.id

    def truncate_after(self, step: int) -> None:
        truncate_jsonl(self.path, step)

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, "time": time.time(), **{k: _finite_or_none(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.run is not None:
            numbers = {k: v for k, v in metrics.items() if not isinstance(v, str)}
            names = {k: v for k, v in metrics.items() if isinstance(v, str)}  # e.g. eval/method/*: not a series
            self.run.log(numbers, step=step)
            if names:
                self.run.config.update(names, allow_val_change=True)

    def log_table(self, step: int, key: str, columns: list[str], rows: list[list]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=columns, data=rows)}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
