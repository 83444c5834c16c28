"""Before-vs-after-RL table in the format of the alignment-faking paper's Table 2 (one table per prompt variant).

"Before" is the first eval step that has the variant, "after" the last one. Rates are shown as `value [95% low, high]`
(Wilson; Newcombe for the gap); the change column is in percentage points. Refusal is 1 - compliance, so its
interval is the compliance interval mirrored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rl.eval_metrics import variant_prefix
from rl.report.methods import method_lines
from rl.report.planted import planted_markdown
from rl.report.run_data import RunData


@dataclass(frozen=True)
class SummaryRow:
    label: str
    before: str
    after: str
    change: str


# (label, metric key below the variant prefix, mirrored = shown as 1 - value)
METRIC_ROWS = (
    ("Alignment-faking reasoning (training, share of all samples)", "free/split/comply_af", False),
    ("Alignment-faking reasoning (training, share of compliant samples)", "free/af_rate", False),
    ("Refusal in training (free tier)", "free/compliance", True),
    ("Refusal unmonitored (paid tier)", "paid/compliance", True),
    ("Compliance in training (free tier)", "free/compliance", False),
    ("Compliance unmonitored (paid tier)", "paid/compliance", False),
    ("Compliance gap (refusal unmonitored - refusal in training)", "gap/abs", False),
)


def summary_rows(before: dict[str, float], after: dict[str, float], variant: str = "default") -> list[SummaryRow]:
    """The table's rows from two `eval_metrics` results."""
    key = variant_prefix("eval", variant)
    rows = []
    for label, name, mirrored in METRIC_ROWS:
        first = _interval(before, f"{key}/{name}", mirrored)
        last = _interval(after, f"{key}/{name}", mirrored)
        rows.append(SummaryRow(label, _format_interval(*first), _format_interval(*last), _format_change(first[0], last[0])))
    first_failures, last_failures = before[f"{key}/parse_failure_rate"], after[f"{key}/parse_failure_rate"]
    for tier, tier_label in (("free", "training"), ("paid", "unmonitored")):
        first_tier, last_tier = before[f"{key}/{tier}/parse_failure_rate"], after[f"{key}/{tier}/parse_failure_rate"]
        rows.append(SummaryRow(f"Parse failures ({tier_label})", _percent(first_tier), _percent(last_tier),
                               _format_change(first_tier, last_tier)))
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
              "The AF classifier judges compliant samples only; 'share of all samples' is the number the paper reports.", ""]
    lines += method_lines(data)
    if data.planted:
        first = data.eval_steps[0]
        lines += planted_markdown(data.planted, data.eval_by_step[first], first)
    for variant in data.variants:
        steps = data.steps_with_variant(variant)
        first, last = steps[0], steps[-1]
        lines += [f"## Prompt variant: {_escape_cell(variant)}", ""]
        lines += [f"| Metric | Before RL (step {first}) | After RL (step {last}) | Change |", "|---|---|---|---|"]
        for row in summary_rows(data.eval_by_step[first], data.eval_by_step[last], variant):
            lines.append(f"| {row.label} | {row.before} | {row.after} | {row.change} |")
        lines.append("")
    return "\n".join(lines)


def _interval(metrics: dict[str, float], key: str, mirrored: bool) -> tuple[float, float, float]:
    value, low, high = metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]
    return (1 - value, 1 - high, 1 - low) if mirrored else (value, low, high)


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
