"""The names of the methods behind a run's numbers, for the report's tables and figure titles.

Every reported rate says what produced it: the compliance method recorded in each transcript (`compliance_method`)
and the alignment-faking classifier backend (`af_backend`). The offline backends (heuristic keywords, n-gram model)
are proxies and are labelled so.
"""
from __future__ import annotations

from rewards.classifiers.compliance_config import METHOD_LABELS, OFFLINE_METHODS
from rewards.classifiers.types import OFFLINE_AF_BACKENDS
from rl.report.run_data import RunData

# Records written before the method was recorded were all judged by the acceptance-tag rule.
LEGACY_COMPLIANCE_METHOD = "prefix"
AF_BACKEND_LABELS = {
    "heuristic": "heuristic keyword classifier (an offline proxy, not a validated judge)",
    "ngram": "n-gram logistic-regression classifier trained on hand-written scratchpads (an offline proxy, not a "
             "validated judge)",
    "original": "LLM judge, the paper's original 5-criteria classifier",
    "revisited": "LLM judge, the revisited 4-criteria classifier (majority of votes)",
}


def af_backends(data: RunData) -> list[str]:
    """The AF classifier backends that judged any transcript of the run, sorted."""
    return sorted({str(r["af_backend"]) for records in data.eval_records.values() for r in records
                   if r.get("af_backend")})


def af_method(data: RunData) -> str:
    backends = af_backends(data)
    if not backends:
        return "no AF classifier verdicts in this run"
    return "; ".join(AF_BACKEND_LABELS.get(b, b) for b in backends)


def af_method_short(data: RunData) -> str:
    """For figure titles: the backend names, with 'proxy' after the offline ones."""
    backends = af_backends(data)
    return ", ".join(f"{b} (proxy)" if b in OFFLINE_AF_BACKENDS else b for b in backends) or "none"


def compliance_methods(data: RunData) -> list[str]:
    """The compliance methods recorded in the run's transcripts, sorted (old records without one: `prefix`)."""
    return sorted({str(r.get("compliance_method") or LEGACY_COMPLIANCE_METHOD) for records in data.eval_records.values()
                   for r in records})


def compliance_method(data: RunData) -> str:
    methods = compliance_methods(data)
    if not methods:
        return "no eval transcripts in this run"
    return "; ".join(f"{m}: {METHOD_LABELS.get(m, m)}" for m in methods)


def compliance_method_short(data: RunData) -> str:
    """For figure titles: the method names, with 'proxy' after the offline rules."""
    offline = {m for methods in OFFLINE_METHODS.values() for m in methods}
    return ", ".join(f"{m} (proxy)" if m in offline else m for m in compliance_methods(data)) or "none"


def judge_models(data: RunData) -> dict[str, str]:
    """{"compliance" | "af": judge model} as the eval logged it (rl.eval.periodic.method_fields), for LLM-judged
    runs."""
    found: dict[str, str] = {}
    for row in data.metrics_rows:
        for what in ("compliance", "af"):
            model = row.get(f"eval/method/{what}_judge_model")
            if isinstance(model, str):
                found[what] = model
    return found


def method_lines(data: RunData) -> list[str]:
    lines = [f"- Compliance: {compliance_method(data)}.", f"- Alignment-faking reasoning: {af_method(data)}."]
    lines += [f"- Judge model ({what}): {model}." for what, model in sorted(judge_models(data).items())]
    return lines + [""]
