"""Scores compliance methods on labelled OUTPUTs (launch/validate_classifiers.py --task compliance).

Positive class = compliant (label 1). Per method: accuracy, precision, recall, F1, AUROC of the verdict scores, the
confusion table and the accuracy per `kind`; a summary table closes the output.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from rewards.classifiers.compliance import ComplianceClassifier, judge_compliance
from rewards.classifiers.compliance_config import METHOD_LABELS, OFFLINE_METHODS, SETTING_OBJECTIVE
from rewards.classifiers.metrics import Confusion, auroc, confusion
from rewards.classifiers.types import ComplianceVerdict


def methods_to_run(requested: str | None, setting_name: str = "helpful_only") -> list[str]:
    """The requested method, or the setting's offline methods with its default first."""
    return [requested] if requested else list(OFFLINE_METHODS[SETTING_OBJECTIVE[setting_name]])


def method_summary(rows: Sequence[dict], classifier: ComplianceClassifier) -> tuple[dict, list[ComplianceVerdict]]:
    labels = [row["label"] for row in rows]
    verdicts = judge_compliance(classifier, [r["request"] for r in rows], [r["output"] for r in rows])
    c = confusion([v.compliant for v in verdicts], labels)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for row, verdict in zip(rows, verdicts):
        by_kind[row.get("kind") or "unspecified"].append(verdict.compliant == bool(row["label"]))
    summary = {"method": classifier.method, "accuracy": c.accuracy, "precision": c.precision, "recall": c.recall,
               "f1": c.f1, "auroc": auroc([v.score for v in verdicts], labels), "confusion": c,
               "by_kind": {kind: (sum(ok), len(ok)) for kind, ok in sorted(by_kind.items())},
               "failures": sum(v.failure is not None for v in verdicts)}
    return summary, verdicts


def format_report(summary: dict) -> str:
    c: Confusion = summary["confusion"]
    lines = [
        f"== {summary['method']}: {METHOD_LABELS.get(summary['method'], '')} ==",
        f"accuracy {summary['accuracy']:.3f}  precision {summary['precision']:.3f}  recall {summary['recall']:.3f}  "
        f"F1 {summary['f1']:.3f}  AUROC {summary['auroc']:.3f}",
        "                      predicted compliant   predicted not",
        f"  label compliant     {c.tp:>19}   {c.fn:>13}",
        f"  label not compliant {c.fp:>19}   {c.tn:>13}",
        "  correct per kind: " + ", ".join(f"{kind} {ok}/{n}" for kind, (ok, n) in summary["by_kind"].items()),
    ]
    if summary["failures"]:
        lines.append(f"  {summary['failures']} verdicts failed (counted as not compliant)")
    return "\n".join(lines)


def format_table(summaries: Sequence[dict]) -> str:
    width = max(len("method"), *(len(s["method"]) for s in summaries))
    lines = [f"{'method':<{width}}  accuracy  precision  recall     F1  AUROC"]
    lines += [f"{s['method']:<{width}}  {s['accuracy']:>8.3f}  {s['precision']:>9.3f}  {s['recall']:>6.3f}  "
              f"{s['f1']:.3f}  {s['auroc']:.3f}" for s in summaries]
    return "\n".join(lines)
