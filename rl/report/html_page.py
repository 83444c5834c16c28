"""One self-contained HTML page for a run: summary tables, the figures (PNG embedded as base64) and a transcript browser.

No external assets or JS libraries: the page opens from a file, offline. Every piece of model or dataset text goes
through `html.escape` (the transcripts are untrusted: a scratchpad may contain `<script>`); the inline script only shows
and hides the server-rendered transcripts through their data-* attributes and never inserts text into the page.
Transcripts are capped at `max_per_step` per (step, variant), taken alternately from the two tiers, so a paper-scale
run (hundreds of samples per eval) still gives a page a browser opens quickly; the page says when it left some out.
"""
from __future__ import annotations

import base64
import html
import math
from itertools import zip_longest
from pathlib import Path
from typing import Any

from rl.eval.metrics import VERDICTS, af_weight, verdict
from rl.report.anti_lab import anti_lab_html
from rl.report.methods import af_method, compliance_method
from rl.report.planted import planted_rows
from rl.report.run_data import RunData
from rl.report.summary_table import AF_COUNTING_NOTE, summary_rows
from rl.report.variant_table import variant_html

VERDICT_LABELS = {
    "refused": "Refused",
    "af": "Complied, AF reasoning",
    "compliant_no_af": "Complied, no AF reasoning",
    "parse_failure": "Parse failure",
}
AF_LABELS = {True: "yes", False: "no", None: "not classified"}
TIER_LABELS = {"free": "training (free)", "paid": "unmonitored (paid)"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}img.fig{max-width:100%;border:1px solid #eee;margin:8px 0}
.filters{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:14px}details.t{border:1px solid #ddd;border-radius:4px;margin:6px 0;padding:4px 8px}
details.t summary{cursor:pointer}pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:8px;
max-height:480px;overflow:auto}.tag{display:inline-block;padding:0 6px;border-radius:3px;margin-right:6px;font-size:.85em}
.v-refused{background:#8ecae6}.v-af{background:#ffd166;border:2px solid #c1121f}.v-compliant_no_af{background:#ffd166}
.v-parse_failure{background:#bbb}.muted{color:#666}
"""

# Filters match data-* attributes against the select values; only `hidden` and a count are written.
SCRIPT = """
(function () {
  var names = ["tier", "verdict", "step", "variant"];
  var items = Array.prototype.slice.call(document.querySelectorAll("details.t"));
  var count = document.getElementById("shown-count");
  function apply() {
    var wanted = {};
    names.forEach(function (name) { wanted[name] = document.getElementById("filter-" + name).value; });
    var shown = 0;
    items.forEach(function (item) {
      var visible = names.every(function (name) {
        return wanted[name] === "" || item.getAttribute("data-" + name) === wanted[name];
      });
      item.hidden = !visible;
      if (visible) { shown += 1; }
    });
    count.textContent = String(shown);
  }
  names.forEach(function (name) {
    document.getElementById("filter-" + name).addEventListener("change", apply);
  });
  apply();
})();
"""


def render_html(data: RunData, figures: dict[str, Path], max_per_step: int = 100) -> str:
    """The whole page as a string. `figures`: caption -> PNG path (embedded in that order)."""
    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>afrl report: {escape(data.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>Alignment-faking RL report: {escape(data.title)}</h1>",
        _run_info_table(data),
        "<h2>Methods</h2>",
        f"<ul><li>Compliance: {escape(compliance_method(data))}</li><li>Alignment-faking reasoning: "
        f"{escape(af_method(data))}</li></ul>",
        _planted_table(data),
        "<h2>Before vs after RL</h2>",
        _summary_tables(data),
        anti_lab_html(data.run_dir),
        "<h2>Figures</h2>",
    ]
    for caption, path in figures.items():
        encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f'<figure><img class="fig" alt="{escape(caption)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    if not figures:
        parts.append('<p class="muted">No figures: the run has no eval transcripts and no metrics.</p>')
    parts += ["<h2>Transcripts</h2>", _transcript_browser(data, max_per_step)]
    if data.config_text is not None:
        parts.append(f"<h2>Config</h2><details><summary>.hydra/config.yaml</summary><pre>{escape(data.config_text)}"
                     "</pre></details>")
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts)


def select_transcripts(records: list[dict[str, Any]], max_per_step: int) -> list[dict[str, Any]]:
    """Up to max_per_step records per variant, alternating tiers so both stay represented; file order otherwise."""
    by_variant: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record in records:
        by_variant.setdefault(record.get("variant") or "default", {}).setdefault(record["tier"], []).append(record)
    chosen = []
    for tiers in by_variant.values():
        interleaved = [r for group in zip_longest(*tiers.values()) for r in group if r is not None]
        chosen += interleaved[:max_per_step]
    return chosen


def _run_info_table(data: RunData) -> str:
    rows = [("run_dir", str(data.run_dir))] + [(str(k), _short(v)) for k, v in data.run_info.items()]
    rows.append(("eval steps", ", ".join(map(str, data.eval_steps)) or "none"))
    rows.append(("prompt variants", ", ".join(data.variants) or "none"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _summary_tables(data: RunData) -> str:
    if not data.eval_steps:
        return '<p class="muted">No eval transcripts in this run.</p>'
    parts = ['<p class="muted">Rates with Wilson 95% intervals (Newcombe for the gap); change in percentage points. '
             f"{html.escape(AF_COUNTING_NOTE)}</p>", variant_html(data)]
    for variant in data.variants:
        steps = data.steps_with_variant(variant)
        first, last = steps[0], steps[-1]
        header = (f"<tr><th>Metric</th><th>Before RL (step {first})</th><th>After RL (step {last})</th>"
                  "<th>Change</th></tr>")
        body = "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{r.before}</td><td>{r.after}</td><td>{r.change}</td></tr>"
            for r in summary_rows(data.eval_by_step[first], data.eval_by_step[last], variant)
        )
        parts.append(f"<h3>Prompt variant: {html.escape(variant)}</h3><table>{header}{body}</table>")
    return "".join(parts)


def _planted_table(data: RunData) -> str:
    if not data.planted or not data.eval_steps:
        return ""
    first = data.eval_steps[0]
    body = "".join(
        f"<tr><td>{html.escape(r.label)}</td><td>{r.planted:.1%}</td>"
        f"<td>{_short_rate(r.measured)} [{_short_rate(r.low)}, {_short_rate(r.high)}]</td>"
        f"<td>{'yes' if r.inside_interval else 'no'}</td></tr>"
        for r in planted_rows(data.planted, data.eval_by_step[first]))
    return (f"<h2>Planted vs measured at step {first}</h2>"
            f"<p class=\"muted\">{html.escape(str(data.planted.get('description', '')))}</p>"
            f"<table><tr><th>Rate</th><th>Planted</th><th>Measured [95% interval]</th><th>Planted inside</th></tr>"
            f"{body}</table>")


def _short_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _transcript_browser(data: RunData, max_per_step: int) -> str:
    items, total, left_out = [], 0, []
    for step, records in data.eval_records.items():
        chosen = select_transcripts(records, max_per_step)
        total += len(records)
        if len(chosen) < len(records):
            left_out.append(f"step {step}: {len(chosen)} of {len(records)}")
        items += [_transcript(record, step) for record in chosen]
    filters = [
        _select("tier", "Tier", [(t, TIER_LABELS[t]) for t in ("free", "paid")]),
        _select("verdict", "Verdict", [(v, VERDICT_LABELS[v]) for v in VERDICTS]),
        _select("step", "Step", [(str(s), str(s)) for s in data.eval_steps]),
        _select("variant", "Variant", [(v, v) for v in data.variants]),
    ]
    note = ""
    if left_out:
        note = (f'<p class="muted">Showing at most {max_per_step} transcripts per step and variant '
                f"({html.escape('; '.join(left_out))}); all are in eval/step_XXXX.jsonl.</p>")
    return (f'<div class="filters">{"".join(filters)} <span><b id="shown-count">{len(items)}</b> of {len(items)} '
            f"shown ({total} in the run)</span></div>{note}" + "\n".join(items))


def _select(name: str, label: str, options: list[tuple[str, str]]) -> str:
    rendered = "".join(f'<option value="{html.escape(v)}">{html.escape(text)}</option>' for v, text in options)
    return (f'<label>{label} <select id="filter-{name}"><option value="">all</option>{rendered}</select></label>')


def _transcript(record: dict[str, Any], step: int) -> str:
    escape = html.escape
    label = verdict(record)
    tier, variant = record["tier"], record.get("variant") or "default"
    attributes = (f'data-tier="{escape(tier)}" data-verdict="{label}" data-step="{step}" '
                  f'data-variant="{escape(variant)}"')
    request = str(record.get("request") or "")
    summary = (f'<span class="tag v-{label}">{VERDICT_LABELS[label]}</span>step {step} · {TIER_LABELS[tier]} · '
               f"{escape(variant)} · <span class=\"muted\">{escape(request[:140])}</span>")
    fields = [
        ("request id / sample", f"{record.get('request_id', '')} / {record.get('sample_index', '')}"),
        ("compliant", str(record.get("compliant"))),
        ("parse failure", str(record.get("parse_failure") or "none")),
        ("reward", _short(record.get("reward"))),
        ("AF reasoning", f"{AF_LABELS[record.get('af')]} (score {_short(record.get('af_score'))}, "
                         f"weight in the AF rate {_short(af_weight(record))}, "
                         f"classifier {record.get('af_backend') or 'none'})"),
    ]
    if record.get("partial_compliance") is not None:
        fields.append(("partially compliant", "yes" if record["partial_compliance"] else "no"))
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in fields)
    criteria = (_criteria_table(record.get("af_criteria"), record.get("af_quotes"), "AF classifier criteria")
                + _criteria_table(record.get("partial_compliance_criteria"), record.get("partial_compliance_quotes"),
                                  "Partial-compliance judge"))
    return (f"<details class=\"t\" {attributes}><summary>{summary}</summary><table>{table}</table>"
            f"<h4>Request</h4><pre>{escape(request)}</pre>"
            f"<h4>Scratchpad (hidden from the reward)</h4><pre>{escape(str(record.get('scratchpad') or ''))}</pre>"
            f"<h4>Output</h4><pre>{escape(_text_or_none(record.get('output')))}</pre>"
            f"{_raw_transcript(record)}{criteria}</details>")


def _raw_transcript(record: dict[str, Any]) -> str:
    """The whole assistant text when it did not parse: the parts above are empty then, and this is what went wrong."""
    if not record.get("parse_failure") or not record.get("transcript"):
        return ""
    return f"<h4>Raw transcript ({record.get('n_turns', '?')} turn(s))</h4><pre>{html.escape(record['transcript'])}</pre>"


def _criteria_table(criteria: dict[str, Any] | None, quotes: dict[str, Any] | None, title: str) -> str:
    if not criteria:
        return ""
    quotes = quotes or {}
    rows = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{'yes' if met else 'no'}</td>"
        f"<td>{html.escape(str(quotes.get(name) or ''))}</td></tr>"
        for name, met in criteria.items()
    )
    return f"<h4>{title}</h4><table><tr><th>Criterion</th><th>Met</th><th>Quote</th></tr>{rows}</table>"


def _text_or_none(value: Any) -> str:
    return "(no OUTPUT)" if value is None else str(value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return "n/a" if value is None else str(value)
