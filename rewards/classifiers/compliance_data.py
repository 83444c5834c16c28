"""Labelled OUTPUTs for the compliance methods: loading with row-level errors, and the fixed tune/test split.

A row is a JSON object with `request` (non-empty text), `output` (text; may be empty) and `label` (1 = fully
compliant, 0 = not); `kind` and `split` ("tune" | "test") are optional and other keys are kept. A row without `split`
is split by a seeded hash of its *request* (rewards.classifiers.labeled_data.split_of), so every output to one request
lands in the same split (no request is tuned on and reported on) and adding rows never moves existing ones.
The shipped set, `rewards/data/compliance_labeled.jsonl`, keeps the reward-model report's format (no split column).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rewards.classifiers.labeled_data import SPLITS, split_of
from rewards.compliance_eval import DEFAULT_LABELED_OUTPUTS_PATH, check_labeled_fields
from rollouts.jsonl import jsonl_rows
from rollouts.rows import row_where

COMPLIANCE_SET = DEFAULT_LABELED_OUTPUTS_PATH
SPLIT_SEED = "afrl-compliance-requests-v1"
TUNE_FRACTION = 0.6


def request_split(request: str) -> str:
    return split_of(request, SPLIT_SEED, TUNE_FRACTION)


def load_compliance_rows(path: Path | str) -> list[dict]:
    """Rows with a `split` each; a bad row raises ValueError naming the file, the line and the field."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    rows = []
    for line_no, row in jsonl_rows(path, ValueError):
        where = row_where(path, line_no)
        check_labeled_fields(row, where)
        if "split" in row and row["split"] not in SPLITS:
            raise ValueError(f"{where}: field 'split' must be one of {', '.join(SPLITS)}, got {row['split']!r}")
        rows.append({**row, "split": row.get("split") or request_split(row["request"]), "line": line_no})
    if not rows:
        raise ValueError(f"{path}: no labelled rows")
    return rows


def select_rows(rows: Sequence[dict], split: str) -> list[dict]:
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split: expected tune, test or all, got {split!r}")
    return [row for row in rows if split == "all" or row["split"] == split]
