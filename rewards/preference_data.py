"""Preference pairs for training the helpful-only reward model: loading, validation and the held-out split.

The paper's RM was a helpful-only preference model (not public). Open RMs prefer refusals on harmful requests, the
opposite objective, so afrl trains its own on pairs where the fully compliant answer is `chosen` and a refusal, hedged or
disclaimer-laden answer is `rejected`. Sources:
  - a local JSONL / Parquet file with columns `prompt, chosen, rejected` (extra columns are ignored);
  - a dataset shaped like `LLM-LAT/harmful-dataset` (columns `prompt, rejected, chosen` where `chosen` is the refusal and
    `rejected` the compliant answer): the two are SWAPPED so the compliant answer is preferred;
  - the project's own demo set, `rewards/demo_data/helpful_pairs.jsonl` (benign requests).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rollouts.jsonl import jsonl_rows, read_utf8
from rollouts.rows import require_text, row_where

DEMO_PAIRS_PATH = Path(__file__).parent / "demo_data" / "helpful_pairs.jsonl"
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
HARMFUL_DATASET_NAME = "LLM-LAT/harmful-dataset"


class PairFileError(ValueError):
    """A preference file that cannot be used; the message names the file, the row (1-based) and the reason."""


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: for `prompt`, the answer `chosen` should score higher than `rejected`."""

    prompt: str
    chosen: str
    rejected: str
    source: str = ""


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a local .jsonl / .json / .parquet / .csv file as dicts (pandas when installed, else json for JSONL)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PairFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [row for _, row in jsonl_rows(path, PairFileError)]
    if suffix == ".json":
        data = json.loads(read_utf8(path, PairFileError))
        if not isinstance(data, list):
            raise PairFileError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        return data
    if suffix in (".parquet", ".csv"):
        try:
            import pandas as pd
        except ImportError as error:
            raise PairFileError(f"{path}: reading {suffix} files needs pandas (and pyarrow for parquet)") from error
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)
        return frame.to_dict(orient="records")
    raise PairFileError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .parquet or .csv")


def validate_pair_row(row: dict, where: str, source: str = "") -> PreferencePair:
    """A `PreferencePair` from one row, or PairFileError naming `where` (file and row) and what is wrong."""
    for column in PAIR_COLUMNS:
        if column not in row:
            raise PairFileError(f"{where}: missing column {column!r} (found {sorted(row)})")
        require_text(row[column], where, f"column {column!r}", PairFileError)
    if row["chosen"].strip() == row["rejected"].strip():
        raise PairFileError(f"{where}: chosen and rejected are identical ({row['chosen'][:60]!r})")
    return PreferencePair(row["prompt"].strip(), row["chosen"].strip(), row["rejected"].strip(), source)


def load_pairs(path: str | Path = DEMO_PAIRS_PATH) -> list[PreferencePair]:
    """Validated pairs from a `prompt, chosen, rejected` file; the first bad row raises PairFileError."""
    rows = read_rows(path)
    if not rows:
        raise PairFileError(f"{path}: no rows")
    # Row numbers are 1-based data rows (for JSONL without blank lines, the line number).
    return [validate_pair_row(row, row_where(path, index), str(path)) for index, row in enumerate(rows, start=1)]


def swap_harmful_dataset_row(row: dict) -> dict:
    """`LLM-LAT/harmful-dataset` stores the refusal as `chosen` and the compliant answer as `rejected`: swap them."""
    return {"prompt": row.get("prompt"), "chosen": row.get("rejected"), "rejected": row.get("chosen")}


def load_harmful_dataset_pairs(source: str = HARMFUL_DATASET_NAME, split: str = "train",
                               limit: int | None = None) -> list[PreferencePair]:
    """Helpful-only pairs (compliant answer preferred) from a dataset shaped like `LLM-LAT/harmful-dataset`.

    `source` is a local file (.jsonl/.json/.parquet/.csv) or a hub name loaded with `datasets.load_dataset` (needs the
    `datasets` package and hub access; without them the error says to pass a local file). `limit` keeps the first rows.
    """
    if Path(source).expanduser().exists():
        rows, where = read_rows(source), str(source)
    else:
        rows, where = _load_from_hub(source, split), f"{source}[{split}]"
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise PairFileError(f"{where}: no rows")
    for column in PAIR_COLUMNS:
        if column not in rows[0]:
            raise PairFileError(f"{row_where(where, 1)}: missing column {column!r} (found {sorted(rows[0])}); "
                                f"expected the {HARMFUL_DATASET_NAME} shape: prompt, chosen (refusal), rejected "
                                "(compliant answer)")
    return [validate_pair_row(swap_harmful_dataset_row(row), row_where(where, index), where)
            for index, row in enumerate(rows, start=1)]


def _load_from_hub(name: str, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError as error:
        raise PairFileError(f"{name}: not a local file, and the `datasets` package is not installed to fetch it from "
                            "the hub; download the dataset and pass its local path") from error
    try:
        return list(datasets.load_dataset(name, split=split))
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split: all mean "use a local file"
        raise PairFileError(f"{name}: not a local file and could not be loaded from the hub "
                            f"({type(error).__name__}: {error}); download it and pass its local path") from error


def load_pairs_from_source(source: str, kind: str = "pairs", split: str = "train",
                           limit: int | None = None) -> list[PreferencePair]:
    """Dispatch on `kind`: "pairs" (a prompt/chosen/rejected file, used as is) or "harmful_dataset" (swapped)."""
    if kind == "pairs":
        pairs = load_pairs(source)
        return pairs[:limit] if limit is not None else pairs
    if kind == "harmful_dataset":
        return load_harmful_dataset_pairs(source, split=split, limit=limit)
    raise ValueError(f"pairs kind must be 'pairs' or 'harmful_dataset', got {kind!r}")


def split_pairs(pairs: list[PreferencePair], heldout_fraction: float,
                seed: int = 0) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Deterministic (train, held-out) split by prompt: all pairs of one prompt land on the same side.

    Prompts are ordered by a hash of (seed, prompt), so the split does not depend on file order or on Python's hash
    randomisation, and the held-out side takes prompts until it holds round(fraction * n) pairs.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    prompts = sorted({pair.prompt for pair in pairs},
                     key=lambda prompt: hashlib.sha256(f"{seed}\0{prompt}".encode()).hexdigest())
    pairs_per_prompt: dict[str, int] = {}
    for pair in pairs:
        pairs_per_prompt[pair.prompt] = pairs_per_prompt.get(pair.prompt, 0) + 1
    target, heldout_prompts, count = round(heldout_fraction * len(pairs)), set(), 0
    for prompt in prompts:
        if count >= target:
            break
        heldout_prompts.add(prompt)
        count += pairs_per_prompt[prompt]
    train = [pair for pair in pairs if pair.prompt not in heldout_prompts]
    heldout = [pair for pair in pairs if pair.prompt in heldout_prompts]
    return train, heldout
