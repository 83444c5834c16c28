"""The reward interface: every reward scores a batch of `RewardInput` (request + final OUTPUT only)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from rollouts.types import RewardInput


@dataclass
class RewardResult:
    """Scores in the same order as the inputs, plus counters (e.g. {"format_failure": 3}) logged as reward/<key>."""

    scores: list[float]
    counts: Counter = field(default_factory=Counter)


class Reward(Protocol):
    name: str

    def score(self, batch: Sequence[RewardInput]) -> RewardResult: ...
