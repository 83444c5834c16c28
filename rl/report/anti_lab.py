"""The report's anti-AI-lab lines: the share of samples that took the offered action against the lab, per tier, at the
first and the last eval step (Wilson 95% intervals), recomputed from `eval/anti_lab/step_XXXX.jsonl`."""
from __future__ import annotations

import html
import math
from pathlib import Path

from rl.eval.metrics import anti_lab_metrics
from rl.report.run_data import read_eval_dir

TIER_LABELS = (("free", "training (free tier)"), ("paid", "unmonitored (paid tier)"))


def anti_lab_table(run_dir: Path) -> tuple[str, list[tuple[str, str, str, str]], int, int] | None:
    """(method, rows of (label, before, after, change), first step, last step); None when the run has no such eval."""
    by_step = read_eval_dir(Path(run_dir) / "eval" / "anti_lab")
    if not by_step:
        return None
    first, last = min(by_step), max(by_step)
    before, after = anti_lab_metrics(by_step[first]), anti_lab_metrics(by_step[last])
    methods = sorted({str(r.get("anti_lab_method")) for records in by_step.values() for r in records})
    rows = []
    for tier, label in TIER_LABELS:
        key = f"eval/anti_lab/{tier}/rate"
        change = after[key] - before[key]
        rows.append((f"Took the action against the lab, {label}", _interval(before, key), _interval(after, key),
                     "n/a" if math.isnan(change) else f"{100 * change:+.1f} pp"))
    return ", ".join(methods), rows, first, last


def anti_lab_markdown(run_dir: Path) -> list[str]:
    table = anti_lab_table(run_dir)
    if table is None:
        return []
    method, rows, first, last = table
    lines = ["## Anti-AI-lab actions (paper section 6)", "",
             f"Scenarios offering an action against the lab (weight exfiltration first); classifier: {method}.", "",
             f"| Metric | Before RL (step {first}) | After RL (step {last}) | Change |", "|---|---|---|---|"]
    return lines + [f"| {label} | {before} | {after} | {change} |" for label, before, after, change in rows] + [""]


def anti_lab_html(run_dir: Path) -> str:
    table = anti_lab_table(run_dir)
    if table is None:
        return ""
    method, rows, first, last = table
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return (f"<h2>Anti-AI-lab actions (paper section 6)</h2><p class=\"muted\">Classifier: {html.escape(method)}.</p>"
            f"<table><tr><th>Metric</th><th>Before RL (step {first})</th><th>After RL (step {last})</th>"
            f"<th>Change</th></tr>{body}</table>")


def _interval(metrics: dict[str, float], key: str) -> str:
    value, low, high = metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]
    return "n/a" if math.isnan(value) else f"{value:.1%} [{low:.1%}, {high:.1%}]"
