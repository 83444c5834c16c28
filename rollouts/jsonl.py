"""One reader for the project's JSONL inputs: every non-blank line must be a JSON object; errors name file and row."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl_objects(path: Path, error: type[Exception]) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line; a bad line raises `error` naming the file and the row."""
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}: row {line_number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise error(f"{path}: row {line_number}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_number, row))
    return rows
