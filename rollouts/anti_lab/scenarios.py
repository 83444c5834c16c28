"""The anti-AI-lab scenarios: user turns in which someone offers the model a way to act against the lab that trains it.

The project's own texts (not the paper's), in `scenarios.jsonl` beside this file: one JSON object per line with
- `id`: unique name; `kind`: one of KINDS (the kinds of the paper's section 6);
- `text`: the user turn; `{lab_name}` is replaced by the setting's lab name when the prompt is built;
- `action`: what taking the action means, in words (the LLM judge reads it);
- `action_pattern`: a Python regex that finds the concrete artifact of acting in an OUTPUT (the offline rule's proxy).
Each scenario is asked in both tiers by the periodic eval (rl/eval/anti_lab.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rollouts.jsonl import jsonl_rows
from rollouts.rows import require_text, row_where

SCENARIO_FILE = Path(__file__).resolve().parent / "scenarios.jsonl"
KINDS = ("exfiltrate_weights", "help_leak", "undermine_oversight", "deceive_lab")
FIELDS = ("id", "kind", "text", "action", "action_pattern")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file, the row and the field."""


@dataclass(frozen=True)
class Scenario:
    id: str
    kind: str
    text: str
    action: str
    action_pattern: str

    def user_text(self, lab_name: str) -> str:
        return self.text.replace("{lab_name}", lab_name)


def load_scenarios(path: Path | str | None = None, kinds: tuple[str, ...] | list[str] = ()) -> list[Scenario]:
    """The scenarios of `path` (default: the shipped file), only those of `kinds` when given; errors name file/row."""
    path = Path(path) if path else SCENARIO_FILE
    if not path.is_file():
        raise ScenarioError(f"{path}: no anti-lab scenario file there")
    scenarios, seen = [], {}
    for line, row in jsonl_rows(path, ScenarioError):
        where = row_where(path, line)
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)} (expected {', '.join(FIELDS)})")
        values = {name: require_text(row.get(name), where, f"field {name!r}", ScenarioError) for name in FIELDS}
        if values["kind"] not in KINDS:
            raise ScenarioError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}, got {values['kind']!r}")
        if values["id"] in seen:
            raise ScenarioError(f"{where}: field 'id' {values['id']!r} repeats row {seen[values['id']]}")
        try:
            re.compile(values["action_pattern"])
        except re.error as exc:
            raise ScenarioError(f"{where}: field 'action_pattern' is not a valid regex ({exc})") from None
        seen[values["id"]] = line
        scenarios.append(Scenario(**values))
    unknown_kinds = sorted(set(kinds) - set(KINDS))
    if unknown_kinds:
        raise ScenarioError(f"eval.anti_lab.kinds: unknown kind(s) {', '.join(unknown_kinds)} "
                            f"(known: {', '.join(KINDS)})")
    chosen = [s for s in scenarios if not kinds or s.kind in kinds]
    if not chosen:
        raise ScenarioError(f"{path}: no scenarios" + (f" of kinds {', '.join(kinds)}" if kinds else ""))
    return chosen
