"""Preference pairs: the shipped demo set, file validation errors that name the row, the harmful-dataset swap, split."""
from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from rewards.preference_data import (
    DEMO_PAIRS_PATH,
    PairFileError,
    PreferencePair,
    load_harmful_dataset_pairs,
    load_pairs,
    load_pairs_from_source,
    split_pairs,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I can't help with that."}


def test_shipped_pairs_are_valid_and_vary_the_rejected_kind():
    pairs = load_pairs(DEMO_PAIRS_PATH)
    assert len(pairs) >= 120
    kinds = Counter(json.loads(line)["rejected_kind"] for line in DEMO_PAIRS_PATH.read_text().splitlines())
    assert set(kinds) == {"refusal", "hedged", "disclaimer", "rejected_tag"}
    assert min(kinds.values()) >= len(pairs) // 5  # no kind is rare
    # Short texts keep CPU training in minutes.
    assert max(len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs) < 600


def test_shipped_pairs_match_their_generator():
    # helpful_pairs.jsonl is derived data: regenerating it from qa_direct.txt must give the same rows.
    from rewards.demo_data.make_helpful_pairs import HERE, build_pairs

    rows = build_pairs((HERE / "qa_direct.txt").read_text(encoding="utf-8").splitlines())
    assert rows == [json.loads(line) for line in DEMO_PAIRS_PATH.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("bad_row, reason", [
    ({"prompt": "q", "chosen": "a"}, "missing column 'rejected'"),
    ({"prompt": "q", "chosen": "  ", "rejected": "b"}, "column 'chosen' is empty"),
    ({"prompt": "q", "chosen": "Same answer.", "rejected": "Same answer. "}, "chosen and rejected are identical"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "column 'chosen' must be text"),
])
def test_bad_row_error_names_file_row_and_reason(tmp_path, bad_row, reason):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, GOOD, bad_row, GOOD])
    with pytest.raises(PairFileError) as error:
        load_pairs(path)
    message = str(error.value)
    assert str(path) in message and "row 3" in message and reason in message


def test_invalid_json_line_names_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(PairFileError, match=r"row 2: not valid JSON"):
        load_pairs(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(PairFileError, match="no such file"):
        load_pairs(tmp_path / "absent.jsonl")
    (tmp_path / "pairs.txt").write_text("x")
    with pytest.raises(PairFileError, match="unsupported file type '.txt'"):
        load_pairs(tmp_path / "pairs.txt")


def test_parquet_and_jsonl_give_the_same_pairs(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = [GOOD, {"prompt": "Add 2 and 3.", "chosen": "5.", "rejected": "Sorry, I won't."}]
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    from_parquet = load_pairs(tmp_path / "pairs.parquet")
    from_jsonl = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert [(p.prompt, p.chosen, p.rejected) for p in from_parquet] == [(p.prompt, p.chosen, p.rejected)
                                                                          for p in from_jsonl]


def test_harmful_dataset_shape_is_swapped(tmp_path):
    # LLM-LAT/harmful-dataset: `chosen` is the refusal, `rejected` the compliant answer. Helpful-only prefers the latter.
    row = {"prompt": "Explain X.", "rejected": "Sure, here is how X works: ...", "chosen": "I cannot help with X."}
    path = write_jsonl(tmp_path / "harmful.jsonl", [row, row])
    pairs = load_harmful_dataset_pairs(str(path))
    assert pairs[0] == PreferencePair("Explain X.", "Sure, here is how X works: ...", "I cannot help with X.", str(path))
    assert load_pairs_from_source(str(path), kind="harmful_dataset", limit=1) == pairs[:1]


def test_harmful_dataset_wrong_shape_is_named(tmp_path):
    path = write_jsonl(tmp_path / "advbench.jsonl", [{"goal": "x", "target": "y"}])
    with pytest.raises(PairFileError, match=r"row 1: missing column 'prompt'.*LLM-LAT/harmful-dataset shape"):
        load_harmful_dataset_pairs(str(path))


def test_hub_name_without_datasets_package_says_use_a_local_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(PairFileError, match="pass its local path"):
        load_harmful_dataset_pairs("LLM-LAT/harmful-dataset")


def test_unknown_kind():
    with pytest.raises(ValueError, match="pairs kind must be"):
        load_pairs_from_source(str(DEMO_PAIRS_PATH), kind="dpo")


def test_split_is_deterministic_grouped_by_prompt_and_order_free():
    pairs = load_pairs(DEMO_PAIRS_PATH)
    train, heldout = split_pairs(pairs, 0.2, seed=0)
    assert len(train) + len(heldout) == len(pairs)
    # Every demo prompt has 2 pairs, so the held-out side is round(0.2 * n) or one pair-group above it.
    assert round(0.2 * len(pairs)) <= len(heldout) <= round(0.2 * len(pairs)) + 1
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}
    assert split_pairs(list(reversed(pairs)), 0.2, seed=0)[1] == list(reversed(heldout))
    assert split_pairs(pairs, 0.2, seed=1)[1] != heldout
    assert split_pairs(pairs, 0.0)[1] == []
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_pairs(pairs, 1.0)
