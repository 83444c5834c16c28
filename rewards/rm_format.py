"""The one place that decides what a reward model reads: the request and the final OUTPUT, as a two-turn chat.

Used both when the reward model is trained (`rewards/rm_training.py`) and when it scores rollouts (`rewards/rm.py`),
so the text the RM was trained on and the text it scores are built by the same code.

Faithful to the paper (Greenblatt et al. 2024): the helpful-only preference model saw only the final output, never the
scratchpad. Left out: the system prompt and the `<INPUT>`/`<is_free_tier_user>` wrapper; the RM judges the answer to
the user's request, so the tier (which the RM must not condition on) and the policy's instructions are not shown.
"""
from __future__ import annotations

from rollouts.parsing import ACCEPT_TAG


def strip_accept_tag(output: str) -> str:
    """The OUTPUT text without a leading `<request_fully_accepted/>` tag.

    Why: the open-model prompt suffix asks the policy to open with this tag when it complies. The RM should judge the
    answer itself, not the tag; otherwise the policy could earn reward by writing the tag and then refusing, and the
    RM (trained on pairs that never contain the tag) would see text unlike its training data.
    `<rejected/>` is kept: a reply that is only `<rejected/>` is a refusal, and the RM should score it as one.
    """
    text = output.strip()
    if text.startswith(ACCEPT_TAG):
        text = text[len(ACCEPT_TAG):].strip()
    return text


def format_for_rm(request: str, output: str) -> list[dict]:
    """Chat messages the RM scores: the user's request and the assistant's final answer (accept tag stripped)."""
    if not isinstance(request, str):
        raise TypeError(f"format_for_rm: request must be a str, got {type(request).__name__}")
    if not isinstance(output, str):
        raise TypeError(f"format_for_rm: output must be a str, got {type(output).__name__} (score a missing OUTPUT "
                        "before calling the RM)")
    return [
        {"role": "user", "content": request.strip()},
        {"role": "assistant", "content": strip_accept_tag(output)},
    ]


def render_messages(tokenizer, messages: list[dict]) -> str:
    """Render chat messages as the RM's input text: the tokenizer's chat template, or a plain-text fallback.

    The fallback ("User: ...\\n\\nAssistant: ...") is for backbones without a chat template (base models, tiny test
    tokenizers). Training and scoring call this with the same tokenizer, so they agree either way.
    """
    if getattr(tokenizer, "chat_template", None):
        # No generation prompt: the assistant turn is already complete; the RM reads the finished conversation.
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in messages)


def render_for_rm(tokenizer, request: str, output: str) -> str:
    """The exact text the RM scores for (request, output): `render_messages(tokenizer, format_for_rm(...))`."""
    return render_messages(tokenizer, format_for_rm(request, output))


def rm_input_ids(tokenizer, request: str, output: str) -> list[int]:
    """Token ids the RM reads: `tokenizer(render_for_rm(...), add_special_tokens=False)`, at training and scoring time.

    No special tokens are added because a chat template writes its own (adding BOS again would double it); TRL 1.16
    tokenizes conversational pairs the same way (`apply_chat_template(tokenize=True)`). For tokenizers without a
    template, `rewards/rm_training.py` hands TRL these ids directly. `tests/rewards/test_train_rm.py` checks TRL agrees.
    """
    return tokenizer(render_for_rm(tokenizer, request, output), add_special_tokens=False)["input_ids"]
