"""Write a run's report: PNG figures, summary.md (paper Table 2 format) and one self-contained report.html."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rl.report.figures import plot_eval_lines, plot_split_bars, plot_training_curves
from rl.report.html_page import render_html
from rl.report.run_data import load_run
from rl.report.summary_table import summary_markdown


@dataclass
class ReportConfig:
    run_dir: str = ""  # the run directory to read (metrics.jsonl, eval/step_XXXX.jsonl, ...)
    out: str = ""  # where to write the report; "" = <run_dir>/report
    max_per_step: int = 100  # transcripts per (eval step, variant) embedded in the HTML page


@dataclass
class ReportFiles:
    out_dir: Path
    figures: dict[str, Path] = field(default_factory=dict)  # caption -> PNG
    summary: Path | None = None
    html: Path | None = None


def build_report(config: ReportConfig) -> ReportFiles:
    if not config.run_dir:
        raise ValueError("run_dir is required, e.g. run_dir=runs/my_run")
    if config.max_per_step < 1:
        raise ValueError(f"max_per_step must be >= 1, got {config.max_per_step}")
    data = load_run(config.run_dir)
    out_dir = Path(config.out) if config.out else data.run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir=out_dir)
    for variant in data.variants:
        suffix = "" if variant == "default" else f"_{_file_safe(variant)}"
        variant_text = "" if variant == "default" else f", prompt variant {variant}"
        split = plot_split_bars(data, variant, out_dir / f"split_bars{suffix}.png")
        if split:
            caption = "Refuse / comply with AF reasoning / comply without / parse failure, per tier and eval step"
            files.figures[caption + variant_text] = split
        lines = plot_eval_lines(data, variant, out_dir / f"eval_lines{suffix}.png")
        if lines:
            caption = "Compliance, AF reasoning, compliance gap on parsed outputs (95% intervals) and parse failures"
            files.figures[caption + variant_text] = lines
    curves = plot_training_curves(data, out_dir / "training_curves.png")
    if curves:
        files.figures["Training curves from metrics.jsonl"] = curves
    files.summary = out_dir / "summary.md"
    files.summary.write_text(summary_markdown(data), encoding="utf-8")
    files.html = out_dir / "report.html"
    files.html.write_text(render_html(data, files.figures, config.max_per_step), encoding="utf-8")
    return files


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
