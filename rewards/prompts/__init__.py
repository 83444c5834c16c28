"""Judge and classifier prompt texts written by this project (`*.txt` beside this file).

Placeholders are `{name}` and are filled by plain replacement, so braces inside model outputs are never interpreted.
Packaging note: the `.txt` files must be shipped as package data.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    path = PROMPT_DIR / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise ValueError(f"prompt {name!r}: no file {path} (known: {', '.join(known)})")
    return path.read_text(encoding="utf-8")


def fill(template: str, **fields: str) -> str:
    """Replace each `{key}` with its value; every key must occur in the template (catches typos in prompt files)."""
    for key, value in fields.items():
        marker = "{" + key + "}"
        if marker not in template:
            raise ValueError(f"prompt template has no placeholder {marker}")
        template = template.replace(marker, value)
    return template
