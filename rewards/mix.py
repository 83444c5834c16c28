"""`reward=mix`: a weighted sum of component rewards minus a format penalty.

The paper's animal-welfare setting trained on such a mix (a preference model plus a rule for the setting's criteria); here
any of rule / rm / judge can be combined. The penalty applies once per episode with no OUTPUT or a truncated one, so a
policy cannot escape a negative component score by never answering. Component counters are kept under `<name>/<key>`.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from rewards.base import Reward, RewardResult
from rollouts.types import RewardInput


def needs_format_penalty(inp: RewardInput) -> bool:
    return inp.output is None or inp.parse_failure == "truncated"


class MixReward:
    name = "mix"

    def __init__(self, components: Sequence[tuple[Reward, float]], format_penalty: float = 1.0):
        if not components:
            raise ValueError("MixReward: expected at least one (reward, weight) component, got none")
        self.components = list(components)
        self.format_penalty = format_penalty

    def score(self, batch: Sequence[RewardInput]) -> RewardResult:
        totals = [0.0] * len(batch)
        counts: Counter = Counter()
        for reward, weight in self.components:
            result = reward.score(batch)
            if len(result.scores) != len(batch):
                raise ValueError(f"MixReward: component {reward.name!r} returned {len(result.scores)} scores for "
                                 f"{len(batch)} inputs")
            totals = [t + weight * s for t, s in zip(totals, result.scores)]
            counts.update({f"{reward.name}/{k}": v for k, v in result.counts.items()})
        for i, inp in enumerate(batch):
            if needs_format_penalty(inp):
                totals[i] -= self.format_penalty
                counts["format_penalty"] += 1
        return RewardResult(totals, counts)
