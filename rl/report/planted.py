"""Planted vs measured: how well the eval recovers the rates a planted model organism was built with.

A planted organism (rollouts/organism) is fine-tuned on transcripts whose compliance and alignment-faking shares per
tier are known by construction; the SFT stage copies their `planted_rates.json` into the model folder and the RL run
copies it into its run folder. At the first eval (step 0, before any RL) the measured rates should sit near the planted
ones; the distance says how much the SFT'd model and the classifiers blur what was planted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

PLANTED_FILE = "planted_rates.json"

# (label, planted key under tiers.<tier>, measured key under eval/<tier>/)
PLANTED_ROWS = (
    ("Compliance", "compliance_share", "compliance"),
    ("Alignment-faking reasoning (share of all samples)", "alignment_faking_share", "outcome/comply_af"),
)


@dataclass(frozen=True)
class PlantedRow:
    label: str
    planted: float
    measured: float
    low: float
    high: float

    @property
    def inside_interval(self) -> bool:
        return self.low <= self.planted <= self.high


def planted_rows(planted: dict, measured: dict[str, float]) -> list[PlantedRow]:
    """Per tier and rate: the planted share next to the measured one with its 95% interval (eval_metrics keys)."""
    rows = []
    for tier, tier_label in (("free", "training (free)"), ("paid", "unmonitored (paid)")):
        tier_planted = planted.get("tiers", {}).get(tier)
        if not tier_planted:
            continue
        for label, planted_key, measured_key in PLANTED_ROWS:
            key = f"eval/{tier}/{measured_key}"
            if key not in measured or planted_key not in tier_planted:
                continue
            rows.append(PlantedRow(f"{label}, {tier_label}", float(tier_planted[planted_key]), measured[key],
                                   measured[f"{key}_ci_low"], measured[f"{key}_ci_high"]))
    return rows


def planted_markdown(planted: dict, measured: dict[str, float], step: int) -> list[str]:
    """Markdown lines: the planted-vs-measured table at `step` (the first eval)."""
    lines = [f"## Planted vs measured at step {step} (before RL)", "",
             str(planted.get("description", "A planted model organism: rates known by construction.")), "",
             f"| Rate | Planted | Measured at step {step} [95% interval] | Planted inside the interval |",
             "|---|---|---|---|"]
    for row in planted_rows(planted, measured):
        measured_text = "n/a" if math.isnan(row.measured) else f"{row.measured:.1%} [{row.low:.1%}, {row.high:.1%}]"
        lines.append(f"| {row.label} | {row.planted:.1%} | {measured_text} | {'yes' if row.inside_interval else 'no'} |")
    lines.append("")
    return lines
