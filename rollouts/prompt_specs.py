"""Requests -> token-level prompts for the engine: the setting's system prompt, the tier's user turn, the prefill."""
from __future__ import annotations

from rollouts.chat import render_prompt
from rollouts.config import SettingConfig
from rollouts.prompts import assistant_prefill, build_messages, build_user_turn
from rollouts.types import PromptSpec, Request


def render_prompt_texts(requests: list[Request], tier: str, setting: SettingConfig, tokenizer) -> list[str]:
    prefill = assistant_prefill(setting)
    return [render_prompt(tokenizer, build_messages(request.text, tier, setting), prefill) for request in requests]


def build_prompt_specs(requests: list[Request], tier: str, setting: SettingConfig, tokenizer) -> list[PromptSpec]:
    prefill = assistant_prefill(setting)
    specs = []
    for request, text in zip(requests, render_prompt_texts(requests, tier, setting, tokenizer)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        specs.append(PromptSpec(request=request, tier=tier, token_ids=tuple(ids), prefill=prefill))
    return specs


def prompt_token_counts(requests: list[Request], tier: str, setting: SettingConfig, tokenizer) -> list[int]:
    """Prompt length in tokens of each request, rendered and tokenized exactly as `build_prompt_specs` does."""
    texts = render_prompt_texts(requests, tier, setting, tokenizer)
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def user_turn_token_counts(requests: list[Request], tier: str, setting: SettingConfig, tokenizer) -> list[int]:
    """Estimated prompt lengths in tokens, without tokenizing the (up to 5k-token) system prompt once per request.

    A prompt is fixed text (template, system prompt, prefill) around the user turn, and the user turn starts and ends
    with fixed tags, so its length is the fixed part's (measured once, with a placeholder request) plus the user turn's;
    only a tokenizer whose merges reach across those tags would count a token or two differently.
    """
    if not requests:
        return []
    placeholder = "x"
    fixed = (prompt_token_counts([Request(id="placeholder", text=placeholder, source="")], tier, setting, tokenizer)[0]
             - len(tokenizer(build_user_turn(placeholder, tier, setting), add_special_tokens=False)["input_ids"]))
    turns = [build_user_turn(request.text, tier, setting) for request in requests]
    return [fixed + len(ids) for ids in tokenizer(turns, add_special_tokens=False)["input_ids"]]
