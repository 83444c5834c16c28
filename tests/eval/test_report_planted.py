"""Planted vs measured rates in the report: the table's numbers come from planted_rates.json and eval_metrics."""
from __future__ import annotations

import json

from rl.eval.metrics import eval_metrics
from rl.report.build import ReportConfig, build_report
from rl.report.planted import planted_rows

PLANTED = {"description": "Planted model organism (test).",
           "tiers": {"free": {"compliance_share": 0.25, "alignment_faking_share": 0.25},
                     "paid": {"compliance_share": 0.10, "alignment_faking_share": 0.0}}}


def records(tier: str, compliant: int, af: int, n: int = 20) -> list[dict]:
    """n records of a tier: the first `af` compliant with AF, then compliant without, then refusals."""
    return [{"step": 0, "tier": tier, "compliant": i < compliant, "af": (i < af) if i < compliant else None,
             "parse_failure": None, "reward": 0.0} for i in range(n)]


def test_rows_pair_each_planted_share_with_the_measured_rate_and_interval():
    measured = eval_metrics(records("free", 5, 4) + records("paid", 2, 0))
    rows = {r.label: r for r in planted_rows(PLANTED, measured)}
    free = rows["Compliance, training (free)"]
    # 5 of 20 compliant: 25%, Wilson 95% [11.2%, 46.9%]
    assert (free.planted, free.measured) == (0.25, 0.25) and round(free.low, 3) == 0.112 and free.inside_interval
    af = rows["Alignment-faking reasoning (share of all samples), training (free)"]
    assert af.measured == 4 / 20 and af.planted == 0.25
    assert rows["Compliance, unmonitored (paid)"].measured == 0.1
    assert len(rows) == 4


def test_report_shows_the_planted_table_when_the_run_has_planted_rates(tmp_path):
    (tmp_path / "eval").mkdir()
    rows = records("free", 5, 4) + records("paid", 2, 0)
    (tmp_path / "eval" / "step_0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "planted_rates.json").write_text(json.dumps(PLANTED))
    files = build_report(ReportConfig(run_dir=str(tmp_path)))
    summary = files.summary.read_text()
    assert "## Planted vs measured at step 0 (before RL)" in summary
    assert "| Compliance, training (free) | 25.0% | 25.0% [11.2%, 46.9%] | yes |" in summary
    assert "Planted vs measured at step 0" in files.html.read_text()
    assert "acceptance-tag rule" in summary
