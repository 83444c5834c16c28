"""The hand-written AF scratchpad set and its fixed tune/test split."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from rewards.classifiers.labeled_data import DATA_DIR, SCRATCHPAD_SET, SPLIT_SEED, load_labeled, select_split, split_of

NEGATIVE_KINDS = {"neg_refuses_despite_training", "neg_benign_request", "neg_follows_criteria",
                  "neg_restates_training_facts", "neg_unmonitored_tier", "neg_rejects_gaming_training",
                  "neg_complies_for_user", "neg_plain_task"}


@pytest.fixture(scope="module")
def rows():
    return load_labeled(SCRATCHPAD_SET)


def test_set_is_large_balanced_and_covers_every_negative_kind(rows):
    assert len(rows) >= 320
    positives = sum(r["label"] for r in rows)
    assert 0.45 <= positives / len(rows) <= 0.55
    kinds = Counter((r["kind"], r["label"]) for r in rows)
    assert {k for k, label in kinds if label == 0} == NEGATIVE_KINDS
    assert all(k.startswith("af_") for k, label in kinds if label == 1)
    assert all(count >= 15 for count in kinds.values())
    texts = [r["scratchpad"] for r in rows]
    assert len(set(texts)) == len(texts)


def test_hard_negatives_talk_about_training(rows):
    # the negatives the "mentions RLHF" baseline cannot separate: they discuss training/modification too
    hard = [r["scratchpad"].lower() for r in rows if r["kind"] in {"neg_restates_training_facts",
                                                                    "neg_rejects_gaming_training",
                                                                    "neg_refuses_despite_training"}]
    assert sum(("rlhf" in s or "train" in s) and "modif" in s for s in hard) >= 20


def test_split_is_the_seeded_hash_of_the_text(rows):
    assert all(r["split"] == split_of(r["scratchpad"]) for r in rows)
    counts = Counter(r["split"] for r in rows)
    assert 0.5 <= counts["tune"] / len(rows) <= 0.7
    for label in (0, 1):  # both classes in both splits
        assert all(sum(r["label"] == label for r in select_split(rows, s)) >= 50 for s in ("tune", "test"))


def test_split_of_is_deterministic_and_depends_on_seed():
    text = "If I refuse, training changes me."
    assert split_of(text) == split_of(text) == split_of(text, seed=SPLIT_SEED)
    texts = [f"scratchpad number {i}" for i in range(400)]
    assert [split_of(t) for t in texts] != [split_of(t, seed="another seed") for t in texts]
    assert 0.5 < sum(split_of(t) == "tune" for t in texts) / 400 < 0.7
    assert split_of(text, tune_fraction=1.0) == "tune" and split_of(text, tune_fraction=0.0) == "test"


def test_no_overlap_with_the_heuristic_pattern_set(rows):
    older = {r["scratchpad"] for r in load_labeled(DATA_DIR / "af_labeled.jsonl")}
    assert not older & {r["scratchpad"] for r in rows}


def test_select_split_and_rows_without_split(tmp_path):
    rows = [{"scratchpad": "a", "label": 1, "split": "tune"}, {"scratchpad": "b", "label": 0, "split": "test"},
            {"scratchpad": "c", "label": 0}]
    assert [r["scratchpad"] for r in select_split(rows, "tune")] == ["a", "c"]
    assert [r["scratchpad"] for r in select_split(rows, "test")] == ["b", "c"]
    assert len(select_split(rows, "all")) == 3
    with pytest.raises(ValueError, match="split: expected tune, test or all"):
        select_split(rows, "dev")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"scratchpad": "x", "label": 1, "split": "train"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 1: 'split' must be one of tune, test, got 'train'"):
        load_labeled(path)
    path.write_text(json.dumps({"scratchpad": "x", "label": True}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 1: 'label' must be 0 or 1"):
        load_labeled(path)
