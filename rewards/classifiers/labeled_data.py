"""Labelled scratchpad sets for the AF classifiers: loading with row-level errors, and the fixed tune/test split.

A row is a JSON object with `scratchpad` (str) and `label` (0 or 1); `kind` and `split` are optional. The split of a
row is a pure function of its text (a seeded hash), so adding rows never moves existing ones between tune and test.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from rollouts.jsonl import jsonl_rows
from rollouts.rows import row_where

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SCRATCHPAD_SET = DATA_DIR / "af_scratchpads.jsonl"  # the hand-written tune/test set
SPLIT_SEED = "afrl-af-scratchpads-v1"
TUNE_FRACTION = 0.6
SPLITS = ("tune", "test")


def split_of(scratchpad: str, seed: str = SPLIT_SEED, tune_fraction: float = TUNE_FRACTION) -> str:
    """'tune' or 'test' for one scratchpad: the first 8 bytes of sha256(seed + text) as a fraction of 2**64."""
    digest = hashlib.sha256(f"{seed}\n{scratchpad}".encode("utf-8")).digest()
    return "tune" if int.from_bytes(digest[:8], "big") / 2 ** 64 < tune_fraction else "test"


def load_labeled(path: Path | str) -> list[dict]:
    """Rows of a labelled JSONL; a bad row raises ValueError naming the file, the line and the field."""
    path = Path(path)
    rows = []
    for line_no, row in jsonl_rows(path, ValueError):
        where = row_where(path, line_no)
        if not isinstance(row.get("scratchpad"), str):
            raise ValueError(f"{where}: expected an object with a string 'scratchpad'")
        if row.get("label") not in (0, 1) or isinstance(row.get("label"), bool):
            raise ValueError(f"{where}: 'label' must be 0 or 1, got {row.get('label')!r}")
        if "split" in row and row["split"] not in SPLITS:
            raise ValueError(f"{where}: 'split' must be one of {', '.join(SPLITS)}, "
                             f"got {row['split']!r}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no labeled rows")
    return rows


def select_split(rows: Sequence[dict], split: str) -> list[dict]:
    """Rows of one split ('tune' | 'test'), or all rows for 'all'. Rows without a `split` key belong to every split
    (a file without splits is used whole)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split: expected tune, test or all, got {split!r}")
    return [row for row in rows if split == "all" or row.get("split", split) == split]
