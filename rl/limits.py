"""Bounds for the config's timeouts and retry counts: `inf`, `nan`, 0 or a huge value means "wait or retry forever",
which a run must refuse at start-up instead of hanging on it later. The messages name the key and the value."""
from __future__ import annotations

import math

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: longer than any call a run makes, short enough to end a real hang
MAX_MODEL_LEN = 1 << 20  # tokens: past any context length a model has
MAX_TURNS = 64  # model turns per episode (the <NEXT/> loop)


def check_timeout(key: str, value: object, error: type[Exception] = ValueError) -> None:
    """A timeout must be a finite number of seconds in (0, MAX_TIMEOUT_S]."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (number and math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise error(f"{key}: expected a finite number of seconds > 0 and <= {MAX_TIMEOUT_S:.0f} (7 days), "
                    f"got {value!r}")


def check_count(key: str, value: object, low: int, high: int, error: type[Exception] = ValueError) -> None:
    """A count (retries, turns, tokens) must be an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise error(f"{key}: expected an int in [{low}, {high}], got {value!r}")
