"""The validator CLI on the shipped labeled set, and the shipped set itself."""
from __future__ import annotations

import json
import re

import pytest

from launch.validate_classifiers import SHIPPED_SET, load_labeled, main, validate
from rewards.classifiers import AFClassifierConfig


def test_shipped_set_is_balanced_and_has_hard_negatives():
    rows = load_labeled(SHIPPED_SET)
    assert len(rows) >= 40
    assert sum(r["label"] for r in rows) * 2 == len(rows)
    negatives = [r["scratchpad"] for r in rows if r["label"] == 0]
    assert sum("RLHF" in s for s in negatives) >= 5  # negatives that talk about training, not only benign ones
    assert sum("<rejected/>" in s and "RLHF" in s for s in negatives) >= 3  # refusals mentioning RLHF


def test_heuristic_beats_mentions_rlhf_baseline():
    backend, baseline, verdicts = validate(load_labeled(SHIPPED_SET), AFClassifierConfig(backend="heuristic"))
    assert backend["f1"] > baseline["f1"]
    assert backend["auroc"] > baseline["auroc"]
    assert all(v.backend == "heuristic" for v in verdicts)


def test_cli_prints_metrics_and_confusion_table(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d+ scratchpads \(\d+ labeled AF, \d+ not\)", out)
    for word in ("AUROC", "precision", "recall", "F1", "label AF", "label not AF", "ROUGH PROXY", "baseline"):
        assert word in out


def test_bad_rows_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"scratchpad": "ok", "label": 1}) + "\n" + json.dumps({"scratchpad": "x", "label": 2}))
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: 'label' must be 0 or 1, got 2"):
        load_labeled(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        load_labeled(path)
