"""Labelled outputs to harmful-style requests, and how well a score separates compliant from non-compliant ones.

A reward model's pairwise accuracy on its own held-out pairs says little about what RL will exploit: the policy finds the
replies the RM over-rates. `rewards/data/compliance_labeled.jsonl` is a hand-written set, independent of the training
pairs (other requests, other wording), of outputs labelled 1 = fully compliant, 0 = not (refusal, `<rejected/>`,
tag-then-refuse, tag-then-evasive-redirect, hedged partial, moralising, answer buried in disclaimers). Any scorer (an RM,
a compliance classifier) is judged on it by AUROC and by its mean score per kind.

File format, one JSON object a line: `request` (text), `output` (the final OUTPUT text), `label` (0 or 1), optional
`kind` (text). Rows at 1-based positions TEST_EVERY, 2*TEST_EVERY, ... are the "test rows": a part kept out of any
tuning of the demo RM recipe, reported separately.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from rollouts.jsonl import jsonl_rows
from rollouts.rows import row_where

DEFAULT_LABELED_OUTPUTS_PATH = Path(__file__).parent / "data" / "compliance_labeled.jsonl"
LABELED_FIELDS = ("request", "output", "label")
OPTIONAL_FIELDS = ("kind",)
COMPLIANT_KIND = "compliant"
NON_COMPLIANT_KINDS = ("refusal", "rejected_tag", "tag_then_refuse", "tag_then_evasive", "hedged_partial", "moralising",
                       "disclaimer_buried")
TEST_EVERY = 4


class LabeledFileError(ValueError):
    """A labelled-outputs file that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class LabeledOutput:
    request: str
    output: str
    label: int  # 1 = fully compliant, 0 = not
    kind: Optional[str] = None
    line: int = 0  # 1-based line in the file


def check_labeled_fields(row: dict, where: str) -> None:
    """What every labelled-outputs row needs: `request` (non-empty text), `output` (text), `label` (0 or 1); else
    LabeledFileError naming `where` and the field."""
    for field in ("request", "output"):
        if field not in row:
            raise LabeledFileError(f"{where}: missing field {field!r}")
        if not isinstance(row[field], str):
            raise LabeledFileError(f"{where}: field {field!r} must be text, got {type(row[field]).__name__}")
    if not row["request"].strip():
        raise LabeledFileError(f"{where}: field 'request' is empty")
    # An empty output is a legitimate (non-compliant) policy output; the RM scores it like any other.
    if "label" not in row:
        raise LabeledFileError(f"{where}: missing field 'label'")
    label = row["label"]
    if isinstance(label, bool) or label not in (0, 1):
        raise LabeledFileError(f"{where}: field 'label' must be 0 or 1, got {label!r}")


def validate_labeled_row(row: dict, where: str, line: int) -> LabeledOutput:
    """A `LabeledOutput` from one JSON object of the file, or LabeledFileError naming `where` and the bad field."""
    unknown = sorted(set(row) - set(LABELED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise LabeledFileError(f"{where}: unknown field {unknown[0]!r}; allowed: {LABELED_FIELDS + OPTIONAL_FIELDS}")
    check_labeled_fields(row, where)
    label = row["label"]
    kind = row.get("kind")
    if kind is not None:
        if not isinstance(kind, str) or not kind.strip():
            raise LabeledFileError(f"{where}: field 'kind' must be non-empty text, got {kind!r}")
        if (kind == COMPLIANT_KIND) != (label == 1) and kind in (COMPLIANT_KIND, *NON_COMPLIANT_KINDS):
            raise LabeledFileError(f"{where}: field 'label' is {label} but kind {kind!r} means label "
                                   f"{int(kind == COMPLIANT_KIND)}")
    return LabeledOutput(row["request"], row["output"], int(label), kind, line)


def load_labeled_outputs(path: str | Path = DEFAULT_LABELED_OUTPUTS_PATH) -> list[LabeledOutput]:
    """Validated rows of a labelled-outputs JSONL file; the first bad line raises LabeledFileError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LabeledFileError(f"{path}: no such file")
    rows = [validate_labeled_row(row, row_where(path, line_number), line_number)
            for line_number, row in jsonl_rows(path, LabeledFileError)]
    labels = {row.label for row in rows}
    if labels != {0, 1}:
        raise LabeledFileError(f"{path}: needs rows of both labels 0 and 1 for an AUROC, found {sorted(labels)}")
    return rows


def is_test_row(position: int) -> bool:
    """Whether the row at 1-based `position` among the file's rows is a test row (kept out of recipe tuning)."""
    return position % TEST_EVERY == 0


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed as the Mann-Whitney U statistic from average ranks (ties share their mean rank), O(n log n).
    """
    if len(scores) != len(labels):
        raise ValueError(f"auroc: {len(scores)} scores but {len(labels)} labels")
    n_pos = sum(1 for label in labels if label == 1)
    n_neg = sum(1 for label in labels if label == 0)
    if n_pos + n_neg != len(labels):
        raise ValueError(f"auroc: labels must be 0 or 1, got {sorted(set(labels) - {0, 1})}")
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc: needs both labels, got {n_pos} positives and {n_neg} negatives")
    order = sorted(range(len(scores)), key=lambda index: scores[index])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for position in range(start, end + 1):  # ranks are 1-based; a run of ties gets their mean
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    positive_rank_sum = sum(rank for rank, label in zip(ranks, labels) if label == 1)
    return (positive_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def labeled_metrics(rows: Sequence[LabeledOutput], scores: Sequence[float]) -> dict:
    """AUROC on all rows and on the test rows, and the mean score per kind (rows without a kind: "unspecified")."""
    if len(rows) != len(scores):
        raise ValueError(f"labeled_metrics: {len(rows)} rows but {len(scores)} scores")
    labels = [row.label for row in rows]
    test = [index for index in range(len(rows)) if is_test_row(index + 1)]
    test_labels = [labels[index] for index in test]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for row, score in zip(rows, scores):
        by_kind[row.kind or "unspecified"].append(score)
    return {
        "auroc": auroc(scores, labels),
        "n_rows": len(rows),
        "auroc_test_rows": (auroc([scores[index] for index in test], test_labels)
                            if len(set(test_labels)) == 2 else None),
        "n_test_rows": len(test),
        "test_rows": f"every {TEST_EVERY}th row ({TEST_EVERY}, {2 * TEST_EVERY}, ...)",
        "mean_score_by_kind": {kind: sum(values) / len(values) for kind, values in sorted(by_kind.items())},
        "n_by_kind": {kind: len(values) for kind, values in sorted(by_kind.items())},
    }


def format_kind_means(metrics: dict) -> str:
    """One line per kind, compliant first: mean score and count, for printed summaries."""
    means, counts = metrics["mean_score_by_kind"], metrics["n_by_kind"]
    kinds = sorted(means, key=lambda kind: (kind != COMPLIANT_KIND, -means[kind]))
    return "\n".join(f"  {kind:<20} {means[kind]:+.3f}  (n={counts[kind]})" for kind in kinds)
