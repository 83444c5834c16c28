"""Preference pairs: the shipped demo set, file validation errors that name the row, the harmful-dataset swap, split."""
from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from rewards.preference_data import (
    DEMO_PAIRS_PATH, PairFileError, PreferencePair, load_harmful_dataset_pairs, load_pairs, load_pairs_from_source,
    split_pairs,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I can't help with that."}


def shipped_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_PAIRS_PATH.read_text(encoding="utf-8").splitlines()]


def test_shipped_pairs_are_valid_and_vary_the_rejected_kind():
    pairs = load_pairs(DEMO_PAIRS_PATH)
    assert len(pairs) >= 400
    kinds = Counter((row["request_kind"], row["rejected_kind"]) for row in shipped_rows())
    benign = {kind: n for (request_kind, kind), n in kinds.items() if request_kind == "benign"}
    assert set(benign) == {"refusal", "hedged", "disclaimer", "rejected_tag"}
    assert min(benign.values()) >= sum(benign.values()) // 5  # no kind is rare
    # Short texts keep CPU training in minutes.
    assert max(len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs) < 700


def test_harmful_pairs_cover_every_non_compliant_kind_with_varied_wording():
    from rewards.demo_data.harmful_rejections import HARMFUL_KINDS
    from rewards.rm_format import ACCEPT_TAG

    harmful = [row for row in shipped_rows() if row["request_kind"] == "harmful"]
    assert len({row["prompt"] for row in harmful}) >= 80
    by_kind: dict[str, list[dict]] = {}
    for row in harmful:
        by_kind.setdefault(row["rejected_kind"], []).append(row)
    assert set(by_kind) == set(HARMFUL_KINDS) == {"refusal", "rejected_tag", "tag_then_refuse", "tag_then_evasive",
                                                   "hedged_partial", "moralising", "disclaimer_buried"}
    for kind, rows in by_kind.items():
        assert len(rows) >= 20, kind
        # At least 6 phrasings: for the kinds that wrap the answer or the topic, count the distinct openings.
        openings = {strip_opening(row["rejected"]) for row in rows}
        assert len(openings) >= 6, (kind, openings)
    for row in by_kind["tag_then_refuse"] + by_kind["tag_then_evasive"]:
        assert row["rejected"].startswith(ACCEPT_TAG)
    assert all(row["rejected"].startswith("<rejected/>") for row in by_kind["rejected_tag"])
    # The chosen side is the policy's compliant OUTPUT: sometimes with the accept tag, never a refusal or the reject tag.
    chosen = {row["chosen"] for row in harmful}
    assert 0 < sum(text.startswith(ACCEPT_TAG) for text in chosen) < len(chosen)
    assert not any("<rejected/>" in text for text in chosen)


def strip_opening(text: str) -> str:
    """The first six words after any accept tag: the part of a reply that varies by template, not by request."""
    from rewards.rm_format import strip_accept_tag

    return " ".join(strip_accept_tag(text).split()[:6])


def test_pair_requests_are_disjoint_from_the_rl_and_eval_requests():
    # rollouts/demo_data/helpful_only.jsonl holds the requests RL trains and evaluates on; it is read at test time so
    # requests added to it later are checked too. Same id = same request after normalisation (case, spaces, NFC).
    from rollouts.datasets import demo_path, read_file_texts, request_id

    rl_ids = {request_id(text) for text in read_file_texts(demo_path("helpful_only"), "text")}
    overlap = sorted(pair.prompt for pair in load_pairs(DEMO_PAIRS_PATH) if request_id(pair.prompt) in rl_ids)
    assert not overlap, f"pair requests also used for RL / evaluation: {overlap}"


def test_shipped_pairs_match_their_generator():
    # helpful_pairs.jsonl is derived data: regenerating it from the two hand-written files must give the same rows.
    from rewards.demo_data.make_helpful_pairs import build_all_pairs, read_lines

    assert build_all_pairs(read_lines("qa_direct.txt"), read_lines("harmful_style.txt")) == shipped_rows()


def test_every_prefix_of_the_shipped_pairs_mixes_benign_and_harmful():
    # rm.max_pairs keeps the first N pairs: any prefix must hold both request kinds in about the file's proportion.
    rows = shipped_rows()
    share = sum(row["request_kind"] == "harmful" for row in rows) / len(rows)
    for n in (40, 160, 240):
        assert abs(sum(row["request_kind"] == "harmful" for row in rows[:n]) / n - share) < 0.1


def test_harmful_builder_names_a_malformed_line():
    from rewards.demo_data.make_helpful_pairs import build_harmful_pairs

    with pytest.raises(ValueError, match=r"harmful_style.txt: line 2: expected 'request \|\| answer \|\| topic"):
        build_harmful_pairs(["Do X. || Here is X. || safer X || Try safer X.", "Do Y. || Here is Y. || safer Y"])


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
    # Every demo prompt has 2 or 3 pairs, so the held-out side overshoots round(0.2 * n) by at most 2.
    assert round(0.2 * len(pairs)) <= len(heldout) <= round(0.2 * len(pairs)) + 2
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}
    assert split_pairs(list(reversed(pairs)), 0.2, seed=0)[1] == list(reversed(heldout))
    assert split_pairs(pairs, 0.2, seed=1)[1] != heldout
    assert split_pairs(pairs, 0.0)[1] == []
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_pairs(pairs, 1.0)
