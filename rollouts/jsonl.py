"""One reader for the project's JSONL inputs: every non-blank line must be a JSON object; errors name file and row.

Files are read as UTF-8 with a leading byte-order mark dropped; a byte that is not UTF-8 is an error naming the line and
byte offset. Files the run appends to (metrics.jsonl, data_order.jsonl, eval transcripts) may end in a line cut off by
a crash mid-write (every writer ends a row with a newline, so a torn row is a bad last line without one): with
`drop_torn_tail` such a line is dropped with a warning, while a bad line anywhere else is still an error.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from rollouts.rows import row_where

log = logging.getLogger("afrl")


def read_utf8(path: Path, error: type[Exception]) -> str:
    """The text of `path` decoded as UTF-8 (a leading BOM dropped); a non-UTF-8 byte raises `error` naming where."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
        line = data[:offset].count(b"\n") + 1
        raise error(f"{path}: line {line} (byte offset {offset}): byte 0x{data[offset]:02x} is not UTF-8 "
                    f"({exc.reason}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def jsonl_lines(path: Path, error: type[Exception], drop_torn_tail: bool = False) -> Iterator[tuple[int, str, dict]]:
    """(line number, line text, object) per non-blank line; a bad line raises `error` naming the file and the row.

    `drop_torn_tail`: a last line that is not valid JSON and has no newline is dropped with a warning (a write cut
    off by a crash).
    """
    text = read_utf8(path, error)
    # split on "\n" only: str.splitlines would also split inside a JSON string holding U+2028 or other separators
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    unterminated = not text.endswith("\n")
    for position, (line_number, line) in enumerate(lines):
        where = row_where(path, line_number)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if drop_torn_tail and unterminated and position == len(lines) - 1:
                log.warning("%s: dropped an incomplete last line (a write cut off mid-line): %r", where, line[:80])
                return
            raise error(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield line_number, line, row


def jsonl_rows(path: Path, error: type[Exception], drop_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; a bad line raises `error` naming the file and the row."""
    for line_number, _, row in jsonl_lines(path, error, drop_torn_tail):
        yield line_number, row
