"""Chat-template rendering for the alignment-faking prompts, including the <NEXT/> continuation of the paper's harness.

Everything is computed from the tokenizer's own chat template (no per-model strings), so SmolLM2/Qwen (ChatML),
Llama 3 and Gemma-style templates all work.

Templates without a system role: some raise on a system message (Gemma), others silently drop it. Either way the
system prompt is folded into the first user turn as "<system prompt>\n\n<user turn>" — the usual practice for such
models; the model then sees the same text, only in the user role.
"""
from __future__ import annotations

from typing import Any

_SYSTEM_PROBE = "afrl-system-probe-3b9e"
_ASSISTANT_PLACEHOLDER = "afrl-assistant-placeholder-71c4"
NEXT_USER_TURN = "<NEXT/>"


def _apply(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):
        raise ValueError(f"tokenizer.apply_chat_template(tokenize=False) returned {type(text).__name__}, expected str")
    return text


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the template renders a system message (it neither raises nor drops the system text)."""
    probe = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hello"}]
    try:
        return _SYSTEM_PROBE in _apply(tokenizer, probe, add_generation_prompt=True)
    except Exception:  # templates reject a system role with raise_exception (jinja2 TemplateError) or other errors
        return False


def fold_system_prompt(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages with a leading system message merged into the first user message ("system\\n\\nuser")."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    if not rest or rest[0]["role"] != "user":
        raise ValueError("cannot fold the system prompt: the message after it must be a user message")
    rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    return rest


def prepare_messages(tokenizer: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages as this tokenizer's template can take them (system prompt folded when it has no system role)."""
    if messages and messages[0]["role"] == "system" and not supports_system_role(tokenizer):
        return fold_system_prompt(messages)
    return list(messages)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], prefill: str = "") -> str:
    """The prompt text for generation: the template with the assistant turn opened, then the prefill (e.g. "<")."""
    return _apply(tokenizer, prepare_messages(tokenizer, messages), add_generation_prompt=True) + prefill


def turn_suffix(tokenizer: Any, messages_so_far: list[dict[str, str]], following: list[dict[str, str]]) -> str:
    """Text after an assistant turn's content up to the opening of the next assistant turn, `following` in between.

    Found by rendering `messages_so_far` + an assistant placeholder + `following` (with the next assistant turn opened)
    and taking what follows the placeholder, so it starts with the template's end-of-turn marker.
    """
    conversation = prepare_messages(tokenizer, messages_so_far) + [
        {"role": "assistant", "content": _ASSISTANT_PLACEHOLDER},
        *following,
    ]
    text = _apply(tokenizer, conversation, add_generation_prompt=True)
    position = text.rfind(_ASSISTANT_PLACEHOLDER)
    if position < 0:
        raise ValueError("the chat template dropped the assistant message; cannot compute the text between turns")
    return text[position + len(_ASSISTANT_PLACEHOLDER):]


def next_turn_suffix(tokenizer: Any, messages_so_far: list[dict[str, str]], generated_end: str = "") -> str:
    """Text to append after an assistant turn to add the user turn <NEXT/> and open a new assistant turn.

    `turn_suffix` with one <NEXT/> user turn, so it starts with the template's end-of-turn marker
    (e.g. "<|im_end|>\n<|im_start|>user\n<NEXT/>..."). `generated_end`: the text of the stop token the sampler already
    left at the end of the turn (e.g. the EOS "<|im_end|>" when vLLM keeps it); it is removed from the front so the
    marker is not doubled.
    """
    suffix = turn_suffix(tokenizer, messages_so_far, [{"role": "user", "content": NEXT_USER_TURN}])
    if NEXT_USER_TURN not in suffix:
        raise ValueError(f"the chat template dropped the {NEXT_USER_TURN} user turn; rendered suffix: {suffix!r}")
    if generated_end and suffix.startswith(generated_end):
        suffix = suffix[len(generated_end):]
    return suffix


def next_turn_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids that close an assistant turn, add the user turn <NEXT/>, and open the next assistant turn.

    Returned twice: with and without the end-of-turn text, because a sampled turn that stopped on the EOS token
    already holds it. The one definition of the <NEXT/> continuation, shared by the rollout engine and SFT examples.
    """
    suffix = next_turn_suffix(tokenizer, [{"role": "user", "content": "x"}])
    eos_text = tokenizer.eos_token or ""
    without_eos = suffix[len(eos_text):] if eos_text and suffix.startswith(eos_text) else suffix
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return encode(suffix), encode(without_eos)
