"""Bounds for the config's timeouts and retry counts: `inf`, `nan`, 0 or a huge value means "wait or retry forever",
which a run must refuse at start-up instead of hanging on it later (ConfigError naming the key and the value)."""
from __future__ import annotations

from rollouts.config_check import check, is_int_in, is_number_in

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: longer than any call a run makes, short enough to end a real hang
MAX_MODEL_LEN = 1 << 20  # tokens: past any context length a model has
MAX_TURNS = 64  # model turns per episode (the <NEXT/> loop)


def check_timeout(key: str, value: object) -> None:
    """A timeout must be a finite number of seconds in (0, MAX_TIMEOUT_S]."""
    check(is_number_in(value, 0, MAX_TIMEOUT_S, low_open=True), key, value,
          f"a finite number of seconds > 0 and <= {MAX_TIMEOUT_S:.0f} (7 days)")


def check_count(key: str, value: object, low: int, high: int) -> None:
    """A count (retries, turns, tokens) must be an int in [low, high]."""
    check(is_int_in(value, low, high), key, value, f"an int in [{low}, {high}]")
