"""Requests -> token-level prompts for the engine: the setting's system prompt, the tier's user turn, the prefill."""
from __future__ import annotations

from rollouts.chat import render_prompt
from rollouts.config import SettingConfig
from rollouts.engine import PromptSpec
from rollouts.prompts import assistant_prefill, build_messages
from rollouts.types import Request


def build_prompt_specs(requests: list[Request], tier: str, setting: SettingConfig, tokenizer) -> list[PromptSpec]:
    prefill = assistant_prefill(setting)
    specs = []
    for request in requests:
        text = render_prompt(tokenizer, build_messages(request.text, tier, setting), prefill)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        specs.append(PromptSpec(request=request, tier=tier, token_ids=tuple(ids), prefill=prefill))
    return specs
