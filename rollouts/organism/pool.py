"""The organism's request pool: `requests.jsonl` rows `{"text": ..., "topic": ...}`.

`topic` is a short noun phrase that reads inside a sentence ("getting into a locked car", "a phishing email"); the
reasoning and answer templates insert it. The pool is disjoint from the demo request sets, so a model fine-tuned on
the organism is evaluated on requests it has never seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rollouts.datasets import DatasetError, request_id
from rollouts.jsonl import jsonl_rows
from rollouts.rows import require_text, row_where
from rollouts.organism.config import POOL_PATH


@dataclass(frozen=True)
class PoolRequest:
    id: str  # rollouts.datasets.request_id of the text
    text: str
    topic: str


def _field(row: dict, key: str, where: str) -> str:
    if key not in row:
        raise DatasetError(f"{where}: no field {key!r} (fields: {sorted(row)})")
    return require_text(row[key], where, f"field {key!r}", DatasetError).strip()


def load_pool(path: str | Path = POOL_PATH) -> list[PoolRequest]:
    """The pool's requests in file order; a bad row or a duplicate request is an error naming the file and line."""
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{file}: no such file (the organism's request pool)")
    requests, seen = [], {}
    for line_number, row in jsonl_rows(file, DatasetError):
        where = row_where(file, line_number)
        text, topic = _field(row, "text", where), _field(row, "topic", where)
        rid = request_id(text)
        if rid in seen:
            raise DatasetError(f"{where}: duplicate of the request on row {seen[rid]} ({text!r})")
        seen[rid] = line_number
        requests.append(PoolRequest(rid, text, topic))
    if not requests:
        raise DatasetError(f"{file}: no rows")
    return requests

