"""How messages name a data row, and the check every loader applies to a row's text field."""
from __future__ import annotations

from pathlib import Path


def row_where(source: str | Path, number: int) -> str:
    """How messages name one row: "<file>: row N" (for JSONL, N is the line number, blank lines counted)."""
    return f"{source}: row {number}"


def require_text(value: object, where: str, name: str, error: type[Exception]) -> str:
    """`value` if it is text with a non-blank character, else `error` naming `where` and `name` ("column 'goal'")."""
    if value is None:
        raise error(f"{where}: {name} is missing or null")
    if not isinstance(value, str):
        raise error(f"{where}: {name} must be text, got {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise error(f"{where}: {name} is empty")
    return value
