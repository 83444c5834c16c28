"""Read a run directory (the files the trainer and `launch/eval.py` write) into plain Python data for the report.

Layout read (all optional except that a report needs at least one of the first two):
    metrics.jsonl            one JSON object per line: {"step": int, "time": float, "<key>": number, ...}
    eval/step_XXXX.jsonl     one classified transcript per line (see rl/eval/metrics.py for the fields used)
    .hydra/config.yaml       resolved config, shown verbatim in the report
    run_info.json            {"exp_name": ..., "model": ..., ...}
Eval metrics per step are recomputed from the transcripts with `eval_metrics`, so the report does not depend on which
keys were logged and always agrees with the transcripts it shows.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl.eval.metrics import DEFAULT_VARIANT, eval_metrics, variant_prefix
from rl.report.planted import PLANTED_FILE
from rollouts.jsonl import jsonl_rows
from rollouts.rows import row_where

_EVAL_FILE = re.compile(r"^step_(\d{4,})\.jsonl$")


@dataclass
class RunData:
    run_dir: Path
    metrics_rows: list[dict[str, Any]] = field(default_factory=list)
    eval_records: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # step -> transcripts, steps sorted
    eval_by_step: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> eval_metrics(transcripts)
    run_info: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    planted: dict[str, Any] | None = None  # planted_rates.json of a planted organism (rl/report/planted.py)

    @property
    def eval_steps(self) -> list[int]:
        return sorted(self.eval_records)

    @property
    def variants(self) -> list[str]:
        """Prompt variants present in any eval file, the default first."""
        names = {r.get("variant") or DEFAULT_VARIANT for records in self.eval_records.values() for r in records}
        return sorted(names, key=lambda name: (name != DEFAULT_VARIANT, name))

    def steps_with_variant(self, variant: str) -> list[int]:
        """Eval steps at which the prompt variant was evaluated."""
        key = f"{variant_prefix('eval', variant)}/n"
        return [step for step in self.eval_steps if self.eval_by_step[step].get(key, 0) > 0]

    @property
    def title(self) -> str:
        return str(self.run_info.get("exp_name") or self.run_dir.name)


def load_run(run_dir: str | Path) -> RunData:
    """Load everything the report needs; a missing run directory or one with neither metrics nor evals is an error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run_dir {str(run_dir)!r} is not a directory")
    data = RunData(run_dir=run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.exists():
        rows = list(jsonl_rows(metrics_path, ValueError, drop_torn_tail=True))
        for line, row in rows:
            if not isinstance(row.get("step"), int):
                raise ValueError(f"{row_where(metrics_path, line)}: field 'step' must be an int, "
                                 f"got {row.get('step')!r}")
        data.metrics_rows = [row for _, row in rows]
    data.eval_records = read_eval_dir(run_dir / "eval")
    if not data.metrics_rows and not data.eval_records:
        raise ValueError(f"run_dir {str(run_dir)!r} has neither metrics.jsonl rows nor eval/step_XXXX.jsonl files")
    for step, records in data.eval_records.items():
        try:
            data.eval_by_step[step] = eval_metrics(records)
        except ValueError as error:
            raise ValueError(f"{run_dir / 'eval'} step {step}: {error}") from error
    info_path = run_dir / "run_info.json"
    if info_path.exists():
        data.run_info = _read_json(info_path)
    planted_path = run_dir / PLANTED_FILE
    if planted_path.exists():
        data.planted = _read_json(planted_path)
    config_path = run_dir / ".hydra" / "config.yaml"
    if config_path.exists():
        data.config_text = config_path.read_text(encoding="utf-8")
    return data


def read_eval_dir(eval_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """{step: records} from eval/step_XXXX.jsonl, steps ascending. Other files in the folder are ignored."""
    if not eval_dir.is_dir():
        return {}
    by_step: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(eval_dir.iterdir()):
        match = _EVAL_FILE.match(path.name)
        if not match:
            continue
        step = int(match.group(1))
        rows = list(jsonl_rows(path, ValueError, drop_torn_tail=True))
        for line, record in rows:
            if record.get("step", step) != step:
                raise ValueError(f"{row_where(path, line)}: field 'step' is {record.get('step')!r} but the file is for "
                                 f"step {step}")
        by_step[step] = [record for _, record in rows]
    return dict(sorted(by_step.items()))


def metric_series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged key, in step order, skipping rows without it or with a non-numeric value."""
    points = sorted(
        (row["step"], float(row[key]))
        for row in rows
        if isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)
    )
    return [step for step, _ in points], [value for _, value in points]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg})") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
