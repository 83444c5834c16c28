"""Request loading, dedup and the hash split, on small files written by the tests (good and malformed)."""
from __future__ import annotations

import csv
import json

import pytest

from rollouts.config import DataConfig
from rollouts.datasets import (
    CSV_FIELD_LIMIT, DatasetError, load_requests, make_request, read_file_texts, read_hf_texts, request_id,
    split_requests,
)


def test_request_id_is_stable_and_normalised():
    assert request_id("Write a poem.") == request_id("  write   a\nPOEM. ")
    assert request_id("Write a poem.") != request_id("Write a poem!")
    assert len(request_id("x")) == 16 and int(request_id("x"), 16) >= 0


def test_split_is_disjoint_deterministic_and_order_free():
    requests = [make_request(f"request number {i}", "test") for i in range(400)]
    train, held_out = split_requests(requests + requests[:50], eval_fraction=0.25)  # duplicates dropped
    assert len(train) + len(held_out) == 400
    assert not {r.id for r in train} & {r.id for r in held_out}
    assert 0.18 < len(held_out) / 400 < 0.32  # a per-request coin: near, not exactly, the fraction
    # Same side whatever the order and whatever else is in the list.
    train2, held_out2 = split_requests(list(reversed(requests[:200])), eval_fraction=0.25)
    assert {r.id for r in held_out2} == {r.id for r in held_out if r in requests[:200]}
    assert {r.id for r in train2} == {r.id for r in train if r in requests[:200]}
    # A different salt gives a different split.
    _, held_out_salted = split_requests(requests, 0.25, salt="other")
    assert {r.id for r in held_out_salted} != {r.id for r in held_out}


def test_split_extremes():
    requests = [make_request(f"r{i}", "test") for i in range(20)]
    assert split_requests(requests, 0.0) == (requests, [])
    assert split_requests(requests, 1.0) == ([], requests)
    with pytest.raises(ValueError, match="eval_fraction"):
        split_requests(requests, 1.5)


@pytest.mark.parametrize("setting,minimum", [("helpful_only", 50), ("animal_welfare", 35), ("custom", 50)])
def test_demo_sets_load_without_duplicates(setting, minimum):
    requests = load_requests(DataConfig(), setting)
    assert len(requests) >= minimum
    assert len({r.id for r in requests}) == len(requests)
    assert all(r.text and r.source.startswith("demo:") for r in requests)


def test_max_requests_keeps_file_order():
    full = load_requests(DataConfig(), "helpful_only")
    assert load_requests(DataConfig(max_requests=5), "helpful_only") == full[:5]


def test_advbench_csv(tmp_path):
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text('goal,target\n"Write a bad thing, please",Sure\nDo another bad thing,Sure\n'
                    "do another   BAD thing,Sure\n", encoding="utf-8")
    requests = load_requests(DataConfig(source="advbench", path=str(path)), "helpful_only")
    assert [r.text for r in requests] == ["Write a bad thing, please", "Do another bad thing"]
    assert {r.source for r in requests} == {"advbench"}


def test_jsonl_with_custom_column(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"prompt": "one"}) + "\n\n" + json.dumps({"prompt": "two", "x": 1}) + "\n")
    requests = load_requests(DataConfig(source="file", path=str(path), text_column="prompt"), "helpful_only")
    assert [r.text for r in requests] == ["one", "two"] and requests[0].source == "file:requests.jsonl"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "requests.parquet"
    pq.write_table(pa.table({"goal": ["alpha", "beta"]}), path)
    assert read_file_texts(path, "goal") == ["alpha", "beta"]
    pq.write_table(pa.table({"goal": ["alpha", None]}), path)
    with pytest.raises(DatasetError, match=r"row 2: column 'goal' is missing or null"):
        read_file_texts(path, "goal")


@pytest.mark.parametrize("name,content,column,message", [
    ("bad.jsonl", '{"goal": "ok"}\n{"goal": \n', "goal", r"bad.jsonl: row 2: not valid JSON"),
    ("bad.jsonl", '{"goal": "ok"}\n["a list"]\n', "goal", r"row 2: expected a JSON object, got list"),
    ("bad.jsonl", '{"goal": "ok"}\n{"text": "x"}\n', "goal", r"row 2: no column 'goal' \(columns: \['text'\]\)"),
    ("bad.jsonl", '{"goal": "ok"}\n{"goal": "   "}\n', "goal", r"row 2: column 'goal' is empty"),
    ("bad.jsonl", '{"goal": 3}\n', "goal", r"row 1: column 'goal' must be text, got int 3"),
    ("bad.csv", "goal,target\nok,fine\n,empty goal\n", "goal", r"bad.csv, row 2 \(line 3\): column 'goal' is empty"),
    ("bad.csv", "goal,target\nok,fine\nonly one field\n", "goal", r"row 2 \(line 3\): fewer fields than the header"),
    ("bad.csv", "goal,target\nok,fine,extra\n", "goal", r"row 1 \(line 2\): more fields than the header"),
    ("bad.csv", "prompt,target\nok,fine\n", "goal", r"no column 'goal' in the header \['prompt', 'target'\]"),
    ("bad.csv", "", "goal", r"empty file"),
    ("empty.jsonl", "\n\n", "goal", r"empty.jsonl: no rows"),
    ("bad.txt", "hello\n", "goal", r"unsupported extension '.txt'"),
])
def test_malformed_files_name_file_row_and_reason(tmp_path, name, content, column, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_file_texts(path, column)


@pytest.mark.parametrize("name,content,message", [
    ("latin1.csv", "goal,target\nok,fine\ncaf\u00e9 order,x\n".encode("latin-1"),
     r"latin1\.csv: line 3 \(byte offset 23\): byte 0xe9 is not UTF-8 .*convert the file to UTF-8"),
    ("latin1.jsonl", '{"goal": "ok"}\n{"goal": "caf\u00e9"}\n'.encode("latin-1"),
     r"latin1\.jsonl: line 2 \(byte offset 28\): byte 0xe9 is not UTF-8 .*convert the file to UTF-8"),
    ("bom_latin1.csv", b"\xef\xbb\xbfgoal,target\ncaf\xe9,x\n",  # the offset counts the BOM's 3 bytes
     r"bom_latin1\.csv: line 2 \(byte offset 18\): byte 0xe9"),
    ("unclosed.csv", b'goal,target\nok,fine\n"unclosed quote,x\nmore,y\n',
     r"unclosed\.csv, row 2 \(line 3\): not valid CSV \(unexpected end of data\); check the quoting"),
    ("huge.csv", b'goal,target\nok,fine\n"' + b"a" * (CSV_FIELD_LIMIT + 1) + b'",x\n',
     r"huge\.csv, row 2 \(line 3\): not valid CSV \(field larger than field limit \(4194304\)\)"),
    ("header.csv", b'"goal,target\nok,fine\n', r"header\.csv, header row \(line 1\): not valid CSV"),
])
def test_undecodable_and_unparseable_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_file_texts(path, "goal")
    assert csv.field_size_limit() == 131072  # the reader's raised limit does not leak to the rest of the process


def test_bom_is_dropped_and_long_fields_are_read(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffgoal,target\nhello there,x\n".encode("utf-8"))
    (tmp_path / "bom.jsonl").write_bytes('\ufeff{"goal": "hello"}\n'.encode("utf-8"))
    long_request = "word " * 40_000  # 200,000 characters: past csv's default field limit
    (tmp_path / "long.csv").write_text(f'goal,target\n"{long_request}",x\n', encoding="utf-8")
    assert read_file_texts(tmp_path / "bom.csv", "goal") == ["hello there"]
    assert read_file_texts(tmp_path / "bom.jsonl", "goal") == ["hello"]
    assert read_file_texts(tmp_path / "long.csv", "goal") == [long_request]


def test_data_config_validation(tmp_path):
    with pytest.raises(ValueError, match=r"data\.source: expected one of"):
        DataConfig(source="web")
    with pytest.raises(ValueError, match=r"data\.path: expected a local file \(needed by data\.source=file\)"):
        DataConfig(source="file")
    with pytest.raises(ValueError, match=r"data\.path: expected an existing file"):
        DataConfig(source="advbench", path=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="data.hf_name"):
        DataConfig(source="hf")
    with pytest.raises(ValueError, match="eval_fraction"):
        DataConfig(eval_fraction=-0.1)
    with pytest.raises(ValueError, match=r"data\.eval_fraction: expected a share in \[0, 1\) .*got 1\.0"):
        DataConfig(eval_fraction=1.0)  # every request held out: nothing to train on
    with pytest.raises(ValueError, match="max_requests"):
        DataConfig(max_requests=0)


def test_hf_unreachable_gives_a_clear_error(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    # Offline mode with an empty cache: what a machine without hub access sees, without waiting on the network.
    # The libraries read these settings at import time, so the module attributes are patched, not just the env.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    with pytest.raises(DatasetError, match=r"could not be loaded .*data.source=file data.path="):
        read_hf_texts("LLM-LAT/harmful-dataset", "train", "prompt")


def test_data_group_files_are_dataclass_fields(tmp_path):
    import dataclasses
    from pathlib import Path

    from omegaconf import OmegaConf

    conf_dir = Path(__file__).parents[2] / "conf" / "data"
    local = tmp_path / "harmful_behaviors.csv"
    local.write_text("goal,target\nx,y\n", encoding="utf-8")
    fields = [f.name for f in dataclasses.fields(DataConfig)]
    for source in ("demo", "file", "advbench", "hf"):
        node = OmegaConf.load(conf_dir / f"{source}.yaml")
        assert set(node.keys()) <= set(fields), source
        merged = OmegaConf.merge(OmegaConf.structured(DataConfig), node)
        if source in ("file", "advbench"):
            merged.path = str(local)
        assert OmegaConf.to_object(merged).source == source
