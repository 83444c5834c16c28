"""Parse each sample's transcript and score it: the reward receives the request and the final OUTPUT only.

A judge reward whose calls fail too often raises JudgeFailureError from `reward.score`; it is not caught here, so the
step stops instead of training on fallback scores (rewards/judge_errors.py)."""
from __future__ import annotations

from rollouts.parsing import parse_transcript
from rollouts.types import PARSE_FAILURES, RewardInput


def score(reward, samples) -> tuple[list[float], dict[str, float]]:
    """Sets `sample.parsed`; returns the scores and the step's reward / parse-failure rates."""
    for sample in samples:
        sample.parsed = parse_transcript(sample.text, truncated=sample.truncated)
    result = reward.score([RewardInput.from_parsed(s.request.text, s.parsed) for s in samples])
    n = len(samples)
    stats = {f"reward/{key}": count / n for key, count in result.counts.items()}
    for failure in PARSE_FAILURES:
        stats[f"parse/{failure}"] = sum(s.parsed.failure == failure for s in samples) / n
    stats["train/parse_failure_rate"] = sum(s.parsed.failure is not None for s in samples) / n
    return result.scores, stats
