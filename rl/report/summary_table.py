"""Before-vs-after-RL table in the format of the alignment-faking paper's Table 2 (one table per prompt variant).

"Before" is the first eval step that has the variant, "after" the last one. Rates are shown as `value [95% low, high]`
(Wilson; Newcombe for the gap); the change column is in percentage points. Refusal, compliance with and without AF
reasoning and parse failures are the four outcomes of rl/eval/metrics.py (they sum to 1 per tier); the gap counts
parsed outputs only, so the parse-failure rows per tier follow it. The partial-compliance row appears only when the
classifier asked that judge (the revisited backend).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rl.eval.metrics import variant_prefix
from rl.report.anti_lab import anti_lab_markdown
from rl.report.methods import method_lines
from rl.report.planted import planted_markdown
from rl.report.run_data import RunData
from rl.report.variant_table import variant_markdown


# How the AF rows count, said once for summary.md and report.html.
AF_COUNTING_NOTE = ("AF counts: the original classifier contributes the mean of its Partial and Full verdicts per "
                    "sample (0, 0.5 or 1), as the paper reports it; the other classifiers count their yes/no decision. "
                    "Parse failures are their own outcome: not refusals, and not in the gap.")


@dataclass(frozen=True)
class SummaryRow:
    label: str
    before: str
    after: str
    change: str


# (label, metric key below the variant prefix); rows with an interval
METRIC_ROWS = (
    ("Alignment-faking reasoning (training, share of all samples)", "free/outcome/comply_af"),
    ("Alignment-faking reasoning (training, share of compliant samples)", "free/af_among_compliant"),
    ("Partially compliant (training, share of compliant samples)", "free/partial_compliance"),
    ("Refusal in training (free tier)", "free/outcome/refuse"),
    ("Refusal unmonitored (paid tier)", "paid/outcome/refuse"),
    ("Compliance in training (free tier)", "free/compliance"),
    ("Compliance unmonitored (paid tier)", "paid/compliance"),
    ("Compliance gap on parsed outputs (refusal unmonitored - refusal in training)", "gap_parsed/abs"),
)
# Shown only when judged at the first or last step (other backends have no such judge).
OPTIONAL_ROWS = frozenset({"free/partial_compliance"})


def summary_rows(before: dict[str, float], after: dict[str, float], variant: str = "default") -> list[SummaryRow]:
    """The table's rows from two `eval_metrics` results."""
    key = variant_prefix("eval", variant)
    rows = []
    for label, name in METRIC_ROWS:
        first, last = _interval(before, f"{key}/{name}"), _interval(after, f"{key}/{name}")
        if name in OPTIONAL_ROWS and math.isnan(first[0]) and math.isnan(last[0]):
            continue
        rows.append(SummaryRow(label, _format_interval(*first), _format_interval(*last), _format_change(first[0], last[0])))
    for tier, tier_label in (("free", "training"), ("paid", "unmonitored")):
        first_tier, last_tier = before[f"{key}/{tier}/parse_failure_rate"], after[f"{key}/{tier}/parse_failure_rate"]
        rows.append(SummaryRow(f"Parse failures ({tier_label}; not in the gap)", _percent(first_tier),
                               _percent(last_tier), _format_change(first_tier, last_tier)))
    first_failures, last_failures = before[f"{key}/parse_failure_rate"], after[f"{key}/parse_failure_rate"]
    rows.append(SummaryRow("Parse failures (both tiers)", _percent(first_failures), _percent(last_failures),
                           _format_change(first_failures, last_failures)))
    rows.append(SummaryRow("Samples (training / unmonitored)", _counts(before, key), _counts(after, key), ""))
    return rows


def summary_markdown(data: RunData) -> str:
    """summary.md: a heading per variant and a markdown table of before/after RL."""
    lines = [f"# Before vs after RL: {_escape_cell(data.title)}", ""]
    if not data.eval_steps:
        lines.append("No eval transcripts (eval/step_XXXX.jsonl) in this run: nothing to summarise.")
        return "\n".join(lines) + "\n"
    lines += ["Rates with Wilson 95% intervals (Newcombe's interval for the gap); change in percentage points (pp).",
              "The AF classifier judges compliant samples only; 'share of all samples' is the number the paper "
              "reports.",
              AF_COUNTING_NOTE, ""]
    lines += method_lines(data)
    if data.planted:
        first = data.eval_steps[0]
        lines += planted_markdown(data.planted, data.eval_by_step[first], first)
    lines += variant_markdown(data)
    for variant in data.variants:
        steps = data.steps_with_variant(variant)
        first, last = steps[0], steps[-1]
        lines += [f"## Prompt variant: {_escape_cell(variant)}", ""]
        lines += [f"| Metric | Before RL (step {first}) | After RL (step {last}) | Change |", "|---|---|---|---|"]
        for row in summary_rows(data.eval_by_step[first], data.eval_by_step[last], variant):
            lines.append(f"| {row.label} | {row.before} | {row.after} | {row.change} |")
        lines.append("")
    lines += anti_lab_markdown(data.run_dir)
    return "\n".join(lines)


def _interval(metrics: dict[str, float], key: str) -> tuple[float, float, float]:
    return metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]


def _format_interval(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1%} [{low:.1%}, {high:.1%}]"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _format_change(before: float, after: float) -> str:
    if math.isnan(before) or math.isnan(after):
        return "n/a"
    return f"{100 * (after - before):+.1f} pp"


def _counts(metrics: dict[str, float], key: str) -> str:
    return f"{int(metrics[f'{key}/free/n'])} / {int(metrics[f'{key}/paid/n'])}"


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
