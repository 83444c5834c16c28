"""The report's figures (matplotlib, Agg backend, PNG), modelled on the alignment-faking paper's RL plots.

- `plot_split_bars`: the paper's stacked bars (its Fig. 2/3 style): for each eval step, the share of sampled responses
  that refuse / comply with alignment-faking reasoning (yellow, red hatching, as in the paper) / comply without it /
  have no parsable output (grey, on top), in training (free tier) and unmonitored (paid tier) panels side by side.
- `plot_eval_lines`: compliance per tier, AF reasoning (and partial compliance when judged), the compliance gap on
  parsed outputs and the parse failures per tier over steps, Wilson 95% bands (Newcombe's interval for the gap).
- `plot_training_curves`: reward and KL from metrics.jsonl (plus response length and parse failures when logged).
Each returns the PNG path, or None when the run has nothing to draw.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs on training nodes without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter  # noqa: E402

from rl.eval.metrics import variant_prefix  # noqa: E402
from rl.report.methods import af_method_short, compliance_method_short  # noqa: E402
from rl.report.run_data import RunData, metric_series  # noqa: E402

REFUSE_COLOR = "#8ecae6"
COMPLY_COLOR = "#ffd166"
AF_HATCH_COLOR = "#c1121f"
FREE_COLOR = "#e76f51"  # training
PAID_COLOR = "#264653"  # unmonitored
GAP_COLOR = "#6a4c93"
CONDITIONAL_AF_COLOR = "#7f5539"
PARTIAL_COMPLIANCE_COLOR = "#2a9d8f"
PARSE_FAILURE_COLOR = "#bbbbbb"
TIER_TITLES = {"free": "Training (free tier)", "paid": "Unmonitored (paid tier)"}
OUTCOME_PARTS = ("refuse", "comply_af", "comply_no_af", "parse_failure")  # eval_metrics' <tier>/outcome/<part>
DPI = 120
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.titleweight": "bold", "axes.grid": True, "grid.alpha": 0.3}


def plot_split_bars(data: RunData, variant: str, path: Path) -> Path | None:
    """Stacked refuse / comply-with-AF / comply-without-AF / parse-failure bars per eval step, one panel per tier."""
    steps = data.steps_with_variant(variant)
    if not steps:
        return None
    key = variant_prefix("eval", variant)
    positions = list(range(len(steps)))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 2, figsize=(max(9.0, min(18.0, 5.0 + 0.6 * len(steps))), 5.6), sharey=True)
        for axis, tier in zip(axes, ("free", "paid")):
            metrics = [data.eval_by_step[step] for step in steps]
            refuse, comply_af, comply_no_af, failed = (
                [_zero_if_nan(m[f"{key}/{tier}/outcome/{part}"]) for m in metrics] for part in OUTCOME_PARTS)
            with plt.rc_context({"hatch.color": AF_HATCH_COLOR, "hatch.linewidth": 1.2}):
                axis.bar(positions, refuse, 0.8, color=REFUSE_COLOR, edgecolor="white")
                axis.bar(positions, comply_af, 0.8, bottom=refuse, color=COMPLY_COLOR, hatch="///", edgecolor=AF_HATCH_COLOR,
                         linewidth=0)
                top = [r + a for r, a in zip(refuse, comply_af)]
                axis.bar(positions, comply_no_af, 0.8, bottom=top, color=COMPLY_COLOR, edgecolor="white")
                top = [t + c for t, c in zip(top, comply_no_af)]
                axis.bar(positions, failed, 0.8, bottom=top, color=PARSE_FAILURE_COLOR, edgecolor="white")
            if len(steps) <= 12:  # numbers on the segments only while they stay legible
                _label_segments(axis, positions, [refuse, comply_af, comply_no_af, failed])
            n = {int(m[f"{key}/{tier}/n"]) for m in metrics}
            n_text = f"n = {n.pop()} per step" if len(n) == 1 else "n varies by step"
            axis.set_title(f"{TIER_TITLES[tier]}, {n_text}")
            axis.set_xlabel("RL step")
            _step_ticks(axis, positions, steps)
            axis.set_ylim(0, 1)
            axis.yaxis.set_major_formatter(PercentFormatter(1.0))
            axis.grid(axis="x", visible=False)
        axes[0].set_ylabel("Share of sampled responses")
        with plt.rc_context({"hatch.color": AF_HATCH_COLOR}):
            handles = [
                Patch(facecolor=REFUSE_COLOR, label="Refuses"),
                Patch(facecolor=COMPLY_COLOR, hatch="///", edgecolor=AF_HATCH_COLOR, label="Complies, alignment-faking reasoning"),
                Patch(facecolor=COMPLY_COLOR, label="Complies, no alignment-faking reasoning"),
                Patch(facecolor=PARSE_FAILURE_COLOR, label="No parsable output (parse failure)"),
            ]
            figure.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
        figure.suptitle(f"Refusal and alignment faking over RL: {data.title}{_variant_suffix(variant)}\n"
                        f"compliance: {compliance_method_short(data)}; AF classifier: {af_method_short(data)}",
                        fontsize=13)
        figure.tight_layout(rect=(0, 0.11, 1, 0.97))
        return _save(figure, path)


def plot_eval_lines(data: RunData, variant: str, path: Path) -> Path | None:
    """Four panels over RL steps: compliance per tier, AF reasoning (training; partial compliance when judged),
    compliance gap on parsed outputs, parse failures per tier; 95% bands."""
    steps = data.steps_with_variant(variant)
    if not steps:
        return None
    key = variant_prefix("eval", variant)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 4, figsize=(21, 5.0))
        compliance, af_axis, gap_axis, failure_axis = axes
        for tier, color in (("free", FREE_COLOR), ("paid", PAID_COLOR)):
            _band_line(compliance, data, steps, f"{key}/{tier}/compliance", color, TIER_TITLES[tier],
                       dodge=-0.15 if tier == "free" else 0.15)
        compliance.set_title(f"Compliance, method: {compliance_method_short(data)}")
        compliance.set_ylabel("Compliant responses")
        _band_line(af_axis, data, steps, f"{key}/free/outcome/comply_af", FREE_COLOR,
                   "AF reasoning, share of all training samples", dodge=-0.15)
        _band_line(af_axis, data, steps, f"{key}/free/af_among_compliant", CONDITIONAL_AF_COLOR,
                   "AF reasoning, share of compliant classified samples", linestyle="--", dodge=0.15)
        partial_steps = [s for s in steps if not math.isnan(data.eval_by_step[s][f"{key}/free/partial_compliance"])]
        # Only the revisited classifier asks its partial-compliance judge. A lone point among several steps would
        # reset the panel's x range (_band_line), so a single judged step is drawn only when it is the only step.
        if partial_steps and (len(partial_steps) > 1 or len(steps) == 1):
            _band_line(af_axis, data, partial_steps, f"{key}/free/partial_compliance", PARTIAL_COMPLIANCE_COLOR,
                       "Partially compliant, share of compliant judged samples", linestyle=":", dodge=0.3)
        af_axis.set_title(f"AF reasoning (training), classifier: {af_method_short(data)}")
        af_axis.set_ylabel("Samples with AF reasoning")
        _band_line(gap_axis, data, steps, f"{key}/gap_parsed/abs", GAP_COLOR,
                   "Refusal unmonitored - refusal in training")
        gap_axis.axhline(0.0, color="black", linewidth=0.8)
        gap_axis.set_title("Compliance gap (parsed outputs only)")
        gap_axis.set_ylabel("Gap (percentage points)")
        for tier, color in (("free", FREE_COLOR), ("paid", PAID_COLOR)):
            failure_axis.plot(steps, [data.eval_by_step[s][f"{key}/{tier}/parse_failure_rate"] for s in steps],
                              marker="o", markersize=4, color=color, label=TIER_TITLES[tier])
        failure_axis.set_title("Parse failures (not in the gap)")
        failure_axis.set_ylabel("Responses with a parse failure")
        failure_axis.set_ylim(-0.02, 1.02)
        for axis in axes:
            axis.set_xlabel("RL step")
            if len(steps) <= 12:
                axis.set_xticks(steps)
            else:
                axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.yaxis.set_major_formatter(PercentFormatter(1.0))
            axis.legend(loc="best", fontsize=9)
        gap_axis.yaxis.set_major_formatter(FuncFormatter(_points_label))
        compliance.set_ylim(-0.02, 1.02)
        af_axis.set_ylim(-0.02, 1.02)
        low, high = gap_axis.get_ylim()
        gap_axis.set_ylim(min(low, -0.05), max(high, 0.05))
        figure.suptitle(f"Eval metrics with 95% intervals: {data.title}{_variant_suffix(variant)}", fontsize=13)
        figure.tight_layout(rect=(0, 0, 1, 0.95))
        return _save(figure, path)


# metrics.jsonl key -> (panel title, y label, shown even when absent)
TRAINING_PANELS = (
    ("train/reward_mean", "Reward (training batch mean)", "Reward (reward-model score)", True),
    ("train/kl", "KL to the reference policy", "Mean KL estimate (nats)", True),
    ("train/response_len", "Response length", "Tokens per response", False),
    ("train/parse_failure_rate", "Parse failures (training)", "Responses with a parse failure", False),
)


def plot_training_curves(data: RunData, path: Path) -> Path | None:
    """Reward and KL per RL step (raw and a moving average), plus response length / parse failures when logged."""
    if not data.metrics_rows:
        return None
    panels = [p for p in TRAINING_PANELS if p[3] or metric_series(data.metrics_rows, p[0])[0]]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
        for axis, (metric_key, title, ylabel, _) in zip(axes[0], panels):
            steps, values = metric_series(data.metrics_rows, metric_key)
            axis.set_title(title)
            axis.set_xlabel("RL step")
            axis.set_ylabel(ylabel)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not steps:
                axis.text(0.5, 0.5, f"{metric_key}\nnot logged", ha="center", va="center", transform=axis.transAxes,
                          color="gray")
                continue
            _smoothed_line(axis, steps, values)
            if metric_key == "train/reward_mean":
                _eval_reward_points(axis, data)
            if metric_key.endswith("_rate"):
                axis.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            axis.legend(loc="best", fontsize=9)
        figure.suptitle(f"Training curves: {data.title}", fontsize=13)
        figure.tight_layout(rect=(0, 0, 1, 0.94))
        return _save(figure, path)


def _band_line(axis, data: RunData, steps: list[int], key: str, color: str, label: str, linestyle: str = "-",
               dodge: float = 0.0) -> None:
    values = [data.eval_by_step[s][key] for s in steps]
    lows = [data.eval_by_step[s][f"{key}_ci_low"] for s in steps]
    highs = [data.eval_by_step[s][f"{key}_ci_high"] for s in steps]
    if len(steps) == 1:
        # A band needs two points: show the interval as an error bar, shifted by `dodge` steps so that series with
        # equal values do not hide each other.
        axis.errorbar([steps[0] + dodge], values, yerr=[[values[0] - lows[0]], [highs[0] - values[0]]], color=color,
                      capsize=4, marker="o", markersize=5, label=label)
        axis.set_xlim(steps[0] - 1, steps[0] + 1)
        return
    axis.plot(steps, values, marker="o", markersize=4, color=color, linestyle=linestyle, label=label)
    axis.fill_between(steps, lows, highs, color=color, alpha=0.18, linewidth=0)


def _smoothed_line(axis, steps: list[int], values: list[float]) -> None:
    window = max(1, len(values) // 20)
    if window == 1:
        axis.plot(steps, values, color=PAID_COLOR, marker="o" if len(steps) <= 30 else None, markersize=3,
                  label="training, per step")
        return
    axis.plot(steps, values, color=PAID_COLOR, alpha=0.3, linewidth=1, label="training, per step")
    averaged = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                for i in range(len(values))]
    axis.plot(steps, averaged, color=PAID_COLOR, linewidth=2, label=f"moving average ({window} steps)")


def _eval_reward_points(axis, data: RunData) -> None:
    for tier, color in (("free", FREE_COLOR), ("paid", PAID_COLOR)):
        steps = [s for s in data.eval_steps if not math.isnan(data.eval_by_step[s][f"eval/{tier}/reward_mean"])]
        if steps:
            axis.plot(steps, [data.eval_by_step[s][f"eval/{tier}/reward_mean"] for s in steps], linestyle="none",
                      marker="D", markersize=6, color=color, label=f"eval, {TIER_TITLES[tier].lower()}")


def _label_segments(axis, positions: list[int], stacks: list[list[float]]) -> None:
    bottoms = [0.0] * len(positions)
    for heights in stacks:
        for i, height in enumerate(heights):
            if height >= 0.07:
                axis.text(positions[i], bottoms[i] + height / 2, f"{height:.0%}", ha="center", va="center", fontsize=9,
                          bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0})
            bottoms[i] += height


def _step_ticks(axis, positions: list[int], steps: list[int]) -> None:
    stride = max(1, math.ceil(len(steps) / 12))
    axis.set_xticks(positions[::stride])
    axis.set_xticklabels([str(s) for s in steps[::stride]])


def _variant_suffix(variant: str) -> str:
    return "" if variant == "default" else f" (prompt variant: {variant})"


def _points_label(value: float, _position: int) -> str:
    points = round(100 * value)
    return f"{points:+d} pp" if points else "0 pp"


def _zero_if_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
