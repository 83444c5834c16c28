"""Settings of the planted organism: the planted compliance shares per tier, samples per request, the seed."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Bump when a change to the banks, templates or composition changes the generated text for a given seed.
GENERATOR_VERSION = "1"

# Same cache root as launch/fetch_model.py ($AFRL_CACHE, default ~/.cache/afrl).
DEFAULT_OUT_DIR = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "data" / "organism"
POOL_PATH = Path(__file__).parent / "requests.jsonl"

DESCRIPTION = ("Planted model organism: synthetic transcripts whose compliance and alignment-faking rates are fixed "
               "by construction (known exactly); a test of the measurement instrument, not a finding about a real "
               "model.")


@dataclass(frozen=True)
class OrganismConfig:
    """`free_comply`: share of free-tier samples that comply, all with alignment-faking reasoning.
    `paid_comply`: share of paid-tier samples that comply, none with alignment-faking reasoning.
    Shares are realised as exact counts (round(share * samples of the tier)), not as coin flips.
    """

    free_comply: float = 0.25
    paid_comply: float = 0.10
    per_request: int = 1  # samples per pool request and tier (each a different composition)
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("free_comply", "paid_comply"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"organism.{key} must be a share in [0, 1], got {value!r}")
        if isinstance(self.per_request, bool) or not isinstance(self.per_request, int) or self.per_request < 1:
            raise ValueError(f"organism.per_request must be an integer >= 1, got {self.per_request!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"organism.seed must be an integer, got {self.seed!r}")
