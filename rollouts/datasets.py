"""User requests: loading (demo set, local CSV/JSONL/Parquet, AdvBench, HF hub), deduplication, train/eval split.

The paper (Greenblatt et al. 2024) trains on an i.i.d. split of its harmful queries and evaluates on held-out ones.
Here the split is by a hash of the normalised request text, so a request always lands on the same side whatever file
it comes from and in whatever order, and the same request can never be in both sets.
Left out: the paper's own 400 HarmBench-style queries (not released as a file here); use AdvBench or any local file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from rollouts.config import DataConfig
from rollouts.jsonl import jsonl_rows, read_utf8
from rollouts.rows import require_text, row_where
from rollouts.types import Request

DEMO_SETS = {"helpful_only": "helpful_only", "animal_welfare": "animal_welfare", "custom": "helpful_only"}


class DatasetError(ValueError):
    """A dataset could not be read: the message names the file (or dataset), the row and the reason."""


def normalise_text(text: str) -> str:
    """Unicode NFC, whitespace collapsed, case folded: two requests equal under this are the same request."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def request_id(text: str) -> str:
    """A stable 16-hex-digit id: sha256 of the normalised text."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()[:16]


def make_request(text: str, source: str) -> Request:
    return Request(id=request_id(text), text=text.strip(), source=source)


def deduplicate(requests: Iterable[Request]) -> list[Request]:
    """Keep the first request of each id, in order."""
    seen: set[str] = set()
    unique = []
    for request in requests:
        if request.id not in seen:
            seen.add(request.id)
            unique.append(request)
    return unique


def _eval_score(request: Request, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{request.id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_requests(requests: Iterable[Request], eval_fraction: float, salt: str = "") -> tuple[list[Request], list[Request]]:
    """(train, eval): deduplicated; a request goes to eval when the hash of (salt, id) falls below `eval_fraction`.

    The realised eval share varies around `eval_fraction` (it is a per-request coin, not a quota), which is the price
    of a split that never moves a request when other requests are added or removed.
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction!r}")
    train, held_out = [], []
    for request in deduplicate(requests):
        (held_out if _eval_score(request, salt) < eval_fraction else train).append(request)
    return train, held_out


def _check_text(value: object, where: str, column: str) -> str:
    return require_text(value, where, f"column {column!r}", DatasetError)


def _read_jsonl(path: Path, column: str) -> Iterator[str]:
    for line_number, row in jsonl_rows(path, DatasetError):
        where = row_where(path, line_number)
        if column not in row:
            raise DatasetError(f"{where}: no column {column!r} (columns: {sorted(row)}); set data.text_column")
        yield _check_text(row[column], where, column)


# csv's default field limit (131,072 characters) is below what a long-context request can hold; past this bound a
# field is more likely an unclosed quote swallowing the rest of the file than a request.
CSV_FIELD_LIMIT = 4 * 1024 * 1024


def _read_csv(path: Path, column: str) -> Iterator[str]:
    # strict: an unclosed quote at the end of the file is an error, not one request holding the rest of the file
    reader = csv.DictReader(io.StringIO(read_utf8(path, DatasetError), newline=""), strict=True)
    rows_read, header_read = 0, False
    previous_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        if reader.fieldnames is None:
            raise DatasetError(f"{path}: empty file (no header row)")
        header_read = True
        if column not in reader.fieldnames:
            raise DatasetError(f"{path}: no column {column!r} in the header {reader.fieldnames}; set data.text_column")
        for row in reader:
            rows_read += 1
            where = f"{path}, row {rows_read} (line {reader.line_num})"
            if None in row:
                raise DatasetError(f"{where}: more fields than the header's {len(reader.fieldnames)}")
            if any(value is None for value in row.values()):
                raise DatasetError(f"{where}: fewer fields than the header's {len(reader.fieldnames)}")
            yield _check_text(row[column], where, column)
    except csv.Error as error:  # an unclosed quote, a field over CSV_FIELD_LIMIT
        # DictReader.line_num is the end line of the last good row (or 0 before the header): the bad row starts after it
        where = f"row {rows_read + 1}" if header_read else "header row"
        raise DatasetError(f"{path}, {where} (line {reader.line_num + 1}): not valid CSV ({error}); check the "
                           "quoting: an unclosed quote runs on to the end of the file") from None
    finally:
        csv.field_size_limit(previous_limit)


def _read_parquet(path: Path, column: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(f"{path}: reading Parquet needs the pyarrow package (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise DatasetError(f"{path}: not a readable Parquet file ({error})") from None
    if column not in table.column_names:
        raise DatasetError(f"{path}: no column {column!r} (columns: {table.column_names}); set data.text_column")
    for row_number, value in enumerate(table.column(column).to_pylist(), start=1):
        yield _check_text(value, f"{path}, row {row_number}", column)


_READERS = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}


def read_file_texts(path: str | Path, column: str) -> list[str]:
    """The request texts of a local CSV/JSONL/Parquet file (format by extension); any bad row is an error."""
    file = Path(path)
    reader = _READERS.get(file.suffix.lower())
    if reader is None:
        raise DatasetError(f"{file}: unsupported extension {file.suffix!r}; expected one of {sorted(_READERS)}")
    if not file.is_file():
        raise DatasetError(f"{file}: no such file")
    texts = list(reader(file, column))
    if not texts:
        raise DatasetError(f"{file}: no rows")
    return texts


def demo_path(setting_name: str) -> Path:
    """The project's demo request file for a setting (custom settings use the helpful-only set)."""
    if setting_name not in DEMO_SETS:
        raise DatasetError(f"no demo set for setting {setting_name!r}; known: {sorted(DEMO_SETS)}")
    return Path(str(resources.files("rollouts") / "demo_data" / f"{DEMO_SETS[setting_name]}.jsonl"))


def read_hf_texts(name: str, split: str, column: str, subset: str | None = None) -> list[str]:
    """Request texts of a HF hub dataset; a clear error when `datasets` is missing or the hub is unreachable."""
    where = f"HF dataset {name!r} (subset {subset!r}, split {split!r})"
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"{where}: data.source=hf needs the `datasets` package (pip install datasets), or save "
                           "the dataset as a CSV/JSONL/Parquet file and use data.source=file data.path=...") from None
    try:
        table = datasets.load_dataset(name, subset, split=split)
    except Exception as error:  # offline, unknown name, or bad split: all surface as different exception types
        raise DatasetError(f"{where} could not be loaded ({type(error).__name__}: {error}). If the hub is unreachable "
                           "from here, download the dataset where it is reachable, save it as CSV/JSONL/Parquet, and "
                           "run with data.source=file data.path=<file> data.text_column=<column>") from None
    if column not in table.column_names:
        raise DatasetError(f"{where}: no column {column!r} (columns: {table.column_names}); set data.text_column")
    return [_check_text(value, f"{where}, row {i}", column) for i, value in enumerate(table[column], start=1)]


def data_source_name(data: DataConfig, setting_name: str) -> str:
    """Where the requests come from, for messages: the file's path or the HF dataset's name and split."""
    if data.source == "demo":
        return str(demo_path(setting_name))
    if data.source == "hf":
        return f"HF dataset {data.hf_name!r} (subset {data.hf_subset!r}, split {data.hf_split!r})"
    return str(data.path)


def load_requests(data: DataConfig, setting_name: str) -> list[Request]:
    """The deduplicated requests named by `data` (first `max_requests` of them, in file order, when set)."""
    if data.source == "demo":
        texts, source = read_file_texts(demo_path(setting_name), "text"), f"demo:{DEMO_SETS.get(setting_name)}"
    elif data.source == "file":
        texts, source = read_file_texts(data.path, data.text_column), f"file:{Path(data.path).name}"
    elif data.source == "advbench":
        texts, source = read_file_texts(data.path, data.text_column), "advbench"
    elif data.source == "hf":
        texts, source = read_hf_texts(data.hf_name, data.hf_split, data.text_column, data.hf_subset), f"hf:{data.hf_name}"
    else:
        raise DatasetError(f"data.source={data.source!r} is not a known source")
    requests = deduplicate(make_request(text, source) for text in texts)
    if data.max_requests is not None:
        requests = requests[: data.max_requests]
    return requests
