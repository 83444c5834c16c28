"""When a batch of judge calls has failed too often to use: JudgeFailureError and the per-batch rate check.

A failed judge call (after retries) or an unparseable reply scores as a fallback value. A few of those are noise; a
judge that is down, refuses the key or answers in another format would turn a whole step (or a whole eval) into
fallback values, and the run would train or report on them. So every batch of calls is checked against its config's
`max_failure_rate`, and above it the run stops with the counts and the last error. The RL loop does not restart on
this error (rl/run/fault.py): a restart would meet the same judge.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence


class JudgeFailureError(RuntimeError):
    """Too many judge calls of one batch failed. `failed`/`total` calls, failures `by_kind`, the `last_error`."""

    def __init__(self, where: str, failed: int, total: int, by_kind: dict[str, int], last_error: str,
                 max_failure_rate: float):
        self.where, self.failed, self.total = where, failed, total
        self.by_kind, self.last_error, self.max_failure_rate = dict(by_kind), last_error, max_failure_rate
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        super().__init__(
            f"{where}: {failed} of {total} judge calls failed in this batch ({failed / total:.0%} > "
            f"{where}.max_failure_rate={max_failure_rate:g}; by kind: {kinds}); last error: {last_error}. "
            f"Stopping instead of using fallback values: fix the judge, or raise {where}.max_failure_rate")


def check_failure_rate(replies: Sequence, where: str, max_failure_rate: float) -> None:
    """Raise JudgeFailureError when the share of `replies` (JudgeReply) without a parsed answer exceeds the limit."""
    failed = [r for r in replies if r.parsed is None]
    if not replies or len(failed) / len(replies) <= max_failure_rate:
        return
    by_kind = Counter(r.error or "parse" for r in failed)
    last = failed[-1]
    raise JudgeFailureError(where, len(failed), len(replies), by_kind, last.detail or last.error or "parse",
                            max_failure_rate)
