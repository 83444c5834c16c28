"""SFT rows: read from a local .jsonl/.parquet file or a HF hub dataset, validated, split train / held-out by hash.

Two row shapes (`sft.kind`):
  documents   {"<text_column>": "..."}                                   plain language-model text
  transcripts {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   chat transcripts
Every bad row raises `SFTDataError` naming the file, the row (the line number in a .jsonl file, 1-based elsewhere)
and the field, before any model is loaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rollouts.jsonl import jsonl_rows
from rollouts.rows import require_text, row_where

ROLES = ("system", "user", "assistant")
LOCAL_SUFFIXES = (".jsonl", ".parquet")


class SFTDataError(ValueError):
    """A data row or file that cannot be used; the message names the file, the row and the field."""


@dataclass(frozen=True)
class SourceRow:
    """One validated row: `where` names it in messages ("file: row 3"), `key` decides its held-out side."""

    where: str
    key: str
    text: str | None = None  # documents
    messages: tuple[dict, ...] | None = None  # transcripts


def is_local_source(data: str) -> bool:
    """A path to a local file (existing, or named like one: then a missing file is an error, not a hub lookup)."""
    path = Path(data).expanduser()
    return path.exists() or path.suffix.lower() in LOCAL_SUFFIXES or data.startswith((".", "/", "~"))


def read_local_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(row number, row) pairs of a .jsonl (row number = line number; blank lines skipped) or .parquet file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SFTDataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(jsonl_rows(path, SFTDataError))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    raise SFTDataError(f"{path}: unsupported file type {suffix!r}; use .jsonl or .parquet (or a HF dataset name)")


def read_hub_rows(name: str, split: str) -> list[tuple[int, dict]]:
    """Rows of a HF hub dataset; an unreachable hub or unknown name raises SFTDataError saying to use a local file."""
    try:
        import datasets
    except ImportError as error:
        raise SFTDataError(f"{name}: not a local file, and the `datasets` package is not installed to fetch it from "
                           "the hub; download the dataset and pass its local path as sft.data") from error
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split: all mean "use a local file"
        raise SFTDataError(f"{name}: not a local file and could not be loaded from the HF hub (split {split!r}; "
                           f"{type(error).__name__}: {error}); download it and pass its local path as sft.data") from error
    return list(enumerate(dataset, start=1))


def _row_key(row: dict, fallback: str) -> str:
    """The held-out split key: the row's own `id` when it has one, else its content."""
    row_id = row.get("id")
    return f"id:{row_id}" if isinstance(row_id, (str, int)) and str(row_id).strip() else f"content:{fallback}"


def validate_document(row: dict, where: str, text_column: str) -> SourceRow:
    if text_column not in row:
        raise SFTDataError(f"{where}: missing field {text_column!r} (found {sorted(row)}; set sft.text_column)")
    text = require_text(row[text_column], where, f"field {text_column!r}", SFTDataError)
    return SourceRow(where, _row_key(row, text), text=text)


def validate_messages(messages, where: str) -> tuple[dict, ...]:
    """The messages as plain {"role", "content"} dicts, or SFTDataError naming the first bad field.

    Rules: roles from ROLES; a system message only first; non-empty text content; at least one assistant turn; a user
    turn before every assistant turn; the transcript ends on an assistant turn (later messages would train nothing).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise SFTDataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects")
    clean, user_since_assistant = [], False
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise SFTDataError(f"{where}: field {field} must be an object, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise SFTDataError(f"{where}: field {field}.role must be one of {ROLES}, got {role!r}")
        if role == "system" and index != 0:
            raise SFTDataError(f"{where}: field {field}.role: a system message may only come first")
        if not isinstance(content, str):
            raise SFTDataError(f"{where}: field {field}.content must be text, got {type(content).__name__}")
        if not content.strip():
            raise SFTDataError(f"{where}: field {field}.content is empty")
        if role == "assistant" and not user_since_assistant:
            raise SFTDataError(f"{where}: field {field}: an assistant turn must follow a user turn")
        user_since_assistant = role == "user" or (user_since_assistant and role != "assistant")
        clean.append({"role": role, "content": content})
    if not any(message["role"] == "assistant" for message in clean):
        raise SFTDataError(f"{where}: field 'messages' has no assistant turn (nothing to train on)")
    if clean[-1]["role"] != "assistant":
        raise SFTDataError(f"{where}: field messages[{len(clean) - 1}]: the transcript must end with an assistant "
                           f"turn, got {clean[-1]['role']!r}")
    return tuple(clean)


def validate_transcript(row: dict, where: str) -> SourceRow:
    if "messages" not in row:
        raise SFTDataError(f"{where}: missing field 'messages' (found {sorted(row)})")
    messages = validate_messages(row["messages"], where)
    return SourceRow(where, _row_key(row, json.dumps(messages, sort_keys=True)), messages=messages)


def load_source_rows(data: str, kind: str, text_column: str = "text", hf_split: str = "train",
                     max_examples: int | None = None) -> list[SourceRow]:
    """Validated rows of `data` (local file or hub name), the first `max_examples` of them when set."""
    if is_local_source(data):
        source, numbered = str(Path(data).expanduser()), read_local_rows(data)
    else:
        source, numbered = f"{data}[{hf_split}]", read_hub_rows(data, hf_split)
    if max_examples is not None:
        numbered = numbered[:max_examples]
    if not numbered:
        raise SFTDataError(f"{source}: no rows")
    if kind == "documents":
        return [validate_document(row, row_where(source, number), text_column) for number, row in numbered]
    if kind == "transcripts":
        return [validate_transcript(row, row_where(source, number)) for number, row in numbered]
    raise ValueError(f"sft.kind must be 'documents' or 'transcripts', got {kind!r}")


def split_heldout(rows: list[SourceRow], heldout_fraction: float) -> tuple[list[SourceRow], list[SourceRow]]:
    """(train, held-out): the round(fraction * n) rows with the smallest sha256 of their key are held out.

    Depends only on the rows' keys (not on file order, seed or Python's hash randomisation), so the held-out set stays
    the same across seeds and runs; at least one row stays on each side when both sides can be non-empty.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    n_heldout = round(heldout_fraction * len(rows))
    if heldout_fraction > 0 and len(rows) >= 2:
        n_heldout = min(max(n_heldout, 1), len(rows) - 1)
    order = sorted(range(len(rows)), key=lambda i: hashlib.sha256(rows[i].key.encode()).hexdigest())
    heldout_indices = set(order[:n_heldout])
    train = [row for i, row in enumerate(rows) if i not in heldout_indices]
    heldout = [row for i, row in enumerate(rows) if i in heldout_indices]
    return train, heldout
