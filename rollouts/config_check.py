"""The one way a config value is refused: `ConfigError`, whose message names the full key (`algo.clip_low`,
`reward.rm.model_path`), what was expected and the value found. rollouts/ is the lowest layer, so rewards/ and rl/
import it from here."""
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
