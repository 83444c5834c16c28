"""Judge and classifier prompt texts written by this project (`*.txt` beside this file).

Placeholders are `{name}`, filled in one pass (`fill`): text inserted for one field is never searched for placeholders
again, so a request holding `{response}` stays as written and braces in model outputs are never interpreted.
The inserted text sits inside the template's XML-ish tags (`<response>{response}</response>`); any of those tags
inside it (`</response>`, `<request>`, any case) has its angle brackets written `&lt;` / `&gt;`, so the policy's text
cannot close its own section and pose as the judge's instructions. Other tags (`<request_fully_accepted/>`) are kept.
Packaging note: the `.txt` files must be shipped as package data.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TEMPLATE_TAG = re.compile(r"</?([A-Za-z_][A-Za-z0-9_.-]*)\s*>")


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    path = PROMPT_DIR / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise ValueError(f"prompt {name!r}: no file {path} (known: {', '.join(known)})")
    return path.read_text(encoding="utf-8")


def escape_tags(text: str, tags: set[str]) -> str:
    """`<tag>` / `</tag>` of the given names (case-insensitive, spaces allowed) as `&lt;tag&gt;` / `&lt;/tag&gt;`."""
    if not tags:
        return text
    names = "|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True))
    pattern = re.compile(rf"<\s*(/?)\s*({names})\s*>", re.IGNORECASE)
    return pattern.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}&gt;", text)


def fill(template: str, **fields: str) -> str:
    """Every `{key}` replaced by its value (tags of the template escaped in it), in a single pass over the template.
    Every key must occur in the template (catches typos in prompt files); unknown `{...}` in the template stay."""
    present = set(PLACEHOLDER.findall(template))
    for key in fields:
        if key not in present:
            raise ValueError(f"prompt template has no placeholder {{{key}}}")
    tags = {m.group(1) for m in TEMPLATE_TAG.finditer(template)}
    values = {key: escape_tags(value, tags) for key, value in fields.items()}
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
