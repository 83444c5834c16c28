"""The one way a config value is refused: `ConfigError`, whose message names the full key (`algo.clip_low`,
`reward.rm.model_path`), what was expected and the value found. rollouts/ is the lowest layer, so rewards/ and rl/
import it from here. Timeouts and retry counts have bounds: `inf`, `nan`, 0 or a huge value means "wait or retry
forever", which a run must refuse at start-up instead of hanging on it later.
"""
from __future__ import annotations

import math


class ConfigError(ValueError):
    """A bad config value; the message names the key, what was expected and the value."""


def check(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def one_of(key: str, value, allowed) -> None:
    check(value in allowed, key, value, f"one of {', '.join(map(str, allowed))}")


def positive(key: str, value) -> None:
    check(value > 0, key, value, "a number > 0")


def at_least(key: str, value, minimum) -> None:
    check(value >= minimum, key, value, f"a number >= {minimum}")


def is_number_in(value, low: float, high: float, low_open: bool = False) -> bool:
    """A real finite number in [low, high] ((low, high] with low_open); bools are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if low_open else value >= low) and value <= high


def is_int_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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
