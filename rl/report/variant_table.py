"""One row per prompt variant, before vs after RL: the paper's post-RL generalisation view (App. J), where a variant
whose gap comes back after RL shows the trained behaviour depends on the exact prompt.

Each cell is `before -> after` (the first and the last eval step that has the variant); the per-variant tables below
it carry the intervals. The compliance columns and the gap count parsed outputs only (the gap's inputs); the
parse-failure column says how much that leaves out.
"""
from __future__ import annotations

import html
import math

from rl.eval.metrics import variant_prefix
from rl.report.run_data import RunData

# (column heading, metric key below the variant prefix)
COLUMNS = (
    ("Compliance of parsed, training (free)", "free/compliance_parsed"),
    ("Compliance of parsed, unmonitored (paid)", "paid/compliance_parsed"),
    ("Gap on parsed outputs (pp)", "gap_parsed/abs"),
    ("AF reasoning, training (share of all)", "free/outcome/comply_af"),
    ("Parse failures (both tiers)", "parse_failure_rate"),
)


def variant_rows(data: RunData) -> list[tuple[str, str, list[str]]]:
    """(variant, "first -> last" steps, one `before -> after` cell per column) for every variant of the run."""
    rows = []
    for variant in data.variants:
        steps = data.steps_with_variant(variant)
        before, after = data.eval_by_step[steps[0]], data.eval_by_step[steps[-1]]
        key = variant_prefix("eval", variant)
        cells = [_change(before.get(f"{key}/{name}", math.nan), after.get(f"{key}/{name}", math.nan), name)
                 for _, name in COLUMNS]
        rows.append((variant, f"{steps[0]} -> {steps[-1]}", cells))
    return rows


def variant_markdown(data: RunData) -> list[str]:
    """summary.md's across-variants table; nothing for a run with the default prompt only."""
    if len(data.variants) < 2:
        return []
    header = "| Variant | Steps | " + " | ".join(title for title, _ in COLUMNS) + " |"
    lines = ["## All prompt variants, before -> after RL", "",
             "Each cell is before -> after RL; the intervals are in each variant's own table below.", "",
             header, "|" + "---|" * (len(COLUMNS) + 2)]
    for variant, steps, cells in variant_rows(data):
        lines.append(f"| {variant} | {steps} | " + " | ".join(cells) + " |")
    return lines + [""]


def variant_html(data: RunData) -> str:
    """report.html's across-variants table; empty for a run with the default prompt only."""
    if len(data.variants) < 2:
        return ""
    header = "".join(f"<th>{html.escape(title)}</th>" for title in ("Variant", "Steps", *(t for t, _ in COLUMNS)))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in (variant, steps, *cells)) + "</tr>"
                   for variant, steps, cells in variant_rows(data))
    return (f"<h3>All prompt variants, before -&gt; after RL</h3><table><tr>{header}</tr>{body}</table>")


def _change(before: float, after: float, name: str) -> str:
    return f"{_format(before, name)} -> {_format(after, name)}"


def _format(value: float, name: str) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:+.1f}" if name.startswith("gap") else f"{value:.1%}"
