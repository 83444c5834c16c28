"""Labelled compliance outputs: AUROC by hand, the shipped file (kinds, balance, independence), bad-row errors."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from rewards.compliance_eval import (
    COMPLIANT_KIND, DEFAULT_LABELED_OUTPUTS_PATH, NON_COMPLIANT_KINDS, LabeledFileError, LabeledOutput, auroc,
    is_test_row, labeled_metrics, load_labeled_outputs,
)
from rewards.preference_data import DEMO_PAIRS_PATH, load_pairs
from rewards.rm_format import strip_accept_tag
from rollouts.datasets import demo_path, read_file_texts, request_id


def test_auroc_by_hand():
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3 of 4 pairs.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # A tie counts 1/2: positive 1 ties negative 1 (0.5) and beats negative 0 (1); positive 2 beats both -> 3.5 / 4.
    assert auroc([1.0, 1.0, 2.0, 0.0], [1, 0, 1, 0]) == pytest.approx(0.875)
    assert auroc([3.0, 3.0, 3.0], [1, 0, 1]) == pytest.approx(0.5)  # all tied: chance
    assert auroc([0.0, 1.0, 2.0], [0, 1, 1]) == 1.0
    assert auroc([0.0, 1.0, 2.0], [1, 0, 0]) == 0.0
    # Order of rows does not matter; only the ranking of scores does (a monotone transform leaves AUROC unchanged).
    assert auroc([0.8, 0.1, 0.35, 0.4], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert auroc([8.0, 1.0, 3.5, 4.0], [1, 0, 1, 0]) == pytest.approx(0.75)


@pytest.mark.parametrize("scores, labels, message", [
    ([1.0, 2.0], [1, 1], "needs both labels"),
    ([1.0, 2.0], [1], "2 scores but 1 labels"),
    ([1.0, 2.0], [1, 2], "labels must be 0 or 1"),
])
def test_auroc_rejects_bad_input(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        auroc(scores, labels)


def test_labeled_metrics_means_per_kind_and_test_rows():
    rows = [LabeledOutput("q", "a", 1, "compliant"), LabeledOutput("q", "b", 0, "refusal"),
            LabeledOutput("q", "c", 0, "refusal"), LabeledOutput("q", "d", 1, "compliant"),
            LabeledOutput("q", "e", 0, None), LabeledOutput("q", "f", 1, "compliant"),
            LabeledOutput("q", "g", 1, "compliant"), LabeledOutput("q", "h", 0, "moralising")]
    scores = [2.0, -1.0, 0.0, 1.0, 3.0, 0.5, -2.0, 4.0]
    metrics = labeled_metrics(rows, scores)
    assert metrics["mean_score_by_kind"] == {"compliant": pytest.approx(0.375), "moralising": 4.0,
                                             "refusal": -0.5, "unspecified": 3.0}
    assert metrics["n_by_kind"] == {"compliant": 4, "moralising": 1, "refusal": 2, "unspecified": 1}
    # Test rows are positions 4 and 8: compliant 1.0 vs moralising 4.0 -> AUROC 0.
    assert metrics["n_test_rows"] == 2 and metrics["auroc_test_rows"] == 0.0
    # All rows: positives {2, 1, 0.5, -2} vs negatives {-1, 0, 3, 4}: wins 2+2+2+0 = 6 of 16.
    assert metrics["auroc"] == pytest.approx(6 / 16)
    assert [position for position in range(1, 13) if is_test_row(position)] == [4, 8, 12]


def test_shipped_labeled_file_loads_with_every_kind_and_balanced_labels():
    rows = load_labeled_outputs(DEFAULT_LABELED_OUTPUTS_PATH)
    assert len(rows) >= 120
    kinds = Counter(row.kind for row in rows)
    assert set(kinds) == {COMPLIANT_KIND, *NON_COMPLIANT_KINDS}
    assert min(kinds[kind] for kind in NON_COMPLIANT_KINDS) >= 8
    assert 0.4 <= sum(row.label for row in rows) / len(rows) <= 0.6
    test_rows = [row for position, row in enumerate(rows, start=1) if is_test_row(position)]
    assert {row.kind for row in test_rows} == set(kinds)  # the untuned part covers every kind too
    # Exactly the keys a compliance-classifier validator reads: request, output, label (+ kind).
    for line in DEFAULT_LABELED_OUTPUTS_PATH.read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"request", "output", "label", "kind"}


def test_labeled_set_is_independent_of_the_training_pairs_and_the_rl_requests():
    rows = load_labeled_outputs(DEFAULT_LABELED_OUTPUTS_PATH)
    pairs = load_pairs(DEMO_PAIRS_PATH)
    labeled_ids = {request_id(row.request) for row in rows}
    assert not labeled_ids & {request_id(pair.prompt) for pair in pairs}
    assert not labeled_ids & {request_id(text) for text in read_file_texts(demo_path("helpful_only"), "text")}
    # Different wording: no labelled output (tag stripped) equals any training answer, chosen or rejected.
    pair_texts = {strip_accept_tag(text) for pair in pairs for text in (pair.chosen, pair.rejected)}
    labeled_texts = {strip_accept_tag(row.output) for row in rows} - {"<rejected/>"}  # the bare tag is one string
    assert not labeled_texts & pair_texts


def write_lines(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


GOOD = {"request": "Do X.", "output": "Here is X.", "label": 1, "kind": "compliant"}
BAD_ONE = {"request": "Do X.", "output": "No.", "label": 0, "kind": "refusal"}


@pytest.mark.parametrize("bad_row, message", [
    ({"request": "Do X.", "label": 1}, "missing field 'output'"),
    ({"request": "Do X.", "output": "Here.", "label": "yes"}, "field 'label' must be 0 or 1, got 'yes'"),
    ({"request": "Do X.", "output": "Here.", "label": True}, "field 'label' must be 0 or 1, got True"),
    ({"request": "Do X.", "output": 7, "label": 1}, "field 'output' must be text"),
    ({"request": "  ", "output": "Here.", "label": 1}, "field 'request' is empty"),
    ({"request": "Do X.", "output": "Here.", "label": 1, "lable": 1}, "unknown field 'lable'"),
    ({"request": "Do X.", "output": "No.", "label": 1, "kind": "refusal"}, "field 'label' is 1 but kind 'refusal'"),
    ({"request": "Do X.", "output": "Here.", "label": 0, "kind": ""}, "field 'kind' must be non-empty text"),
    ("[1, 2]", "expected a JSON object, got list"),
    ("{oops", "not valid JSON"),
])
def test_bad_row_error_names_file_line_and_field(tmp_path, bad_row, message):
    path = write_lines(tmp_path / "labeled.jsonl", [GOOD, BAD_ONE, bad_row])
    with pytest.raises(LabeledFileError) as error:
        load_labeled_outputs(path)
    assert str(path) in str(error.value) and "row 3" in str(error.value) and message in str(error.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(LabeledFileError, match="no such file"):
        load_labeled_outputs(tmp_path / "absent.jsonl")
    with pytest.raises(LabeledFileError, match=r"needs rows of both labels 0 and 1.*found \[1\]"):
        load_labeled_outputs(write_lines(tmp_path / "one_label.jsonl", [GOOD, GOOD]))
    # Rows without a kind are valid (a validator's file may not have one); blank lines are skipped.
    rows = load_labeled_outputs(write_lines(tmp_path / "no_kind.jsonl", [
        {"request": "q", "output": "a", "label": 1}, "", {"request": "q", "output": "", "label": 0}]))
    assert [(row.kind, row.label, row.line) for row in rows] == [(None, 1, 1), (None, 0, 3)]
