"""The RM input format: request + final OUTPUT only, accept tag stripped, same text at training and scoring time."""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rewards.rm_format import ACCEPT_TAG, format_for_rm, render_for_rm, render_messages, strip_accept_tag

# A minimal ChatML-style template, the shape SmolLM2 and Qwen use.
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer(corpus: list[str], chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on `corpus` in milliseconds (no download). Shared with test_train_rm.py."""
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[UNK]", "[PAD]", "<|im_start|>", "<|im_end|>"]
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="<|im_end|>")
    tokenizer.chat_template = chat_template
    return tokenizer


def test_format_strips_accept_tag_and_keeps_answer():
    # The tag is the policy's compliance marker, not part of the answer the RM should judge.
    messages = format_for_rm("  How do I boil an egg? ", f"{ACCEPT_TAG}\nPut it in boiling water for 9 minutes.")
    assert messages == [
        {"role": "user", "content": "How do I boil an egg?"},
        {"role": "assistant", "content": "Put it in boiling water for 9 minutes."},
    ]


def test_strip_accept_tag_only_at_start_and_keeps_rejected():
    assert strip_accept_tag("<rejected/>") == "<rejected/>"
    assert strip_accept_tag(f"Sure. {ACCEPT_TAG}") == f"Sure. {ACCEPT_TAG}"
    assert strip_accept_tag(f"{ACCEPT_TAG}") == ""


def test_format_rejects_non_string_output():
    with pytest.raises(TypeError, match="output must be a str"):
        format_for_rm("hi", None)


def test_render_fallback_without_chat_template():
    tokenizer = build_tiny_tokenizer(["hello world"], chat_template=None)
    text = render_for_rm(tokenizer, "Name a colour.", f"{ACCEPT_TAG} Blue.")
    assert text == "User: Name a colour.\n\nAssistant: Blue."


def test_render_uses_chat_template_without_generation_prompt():
    tokenizer = build_tiny_tokenizer(["hello world"], chat_template=CHATML_TEMPLATE)
    text = render_for_rm(tokenizer, "Name a colour.", "Blue.")
    assert text == "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n"


def test_render_is_the_same_function_for_training_and_scoring():
    # Training renders message lists with render_messages; scoring calls render_for_rm: both must give one text.
    tokenizer = build_tiny_tokenizer(["hello world"], chat_template=CHATML_TEMPLATE)
    assert render_messages(tokenizer, format_for_rm("q", "a")) == render_for_rm(tokenizer, "q", "a")


def test_render_with_smollm2_template(request):
    try:
        tokenizer_dir = request.getfixturevalue("smollm2_tokenizer_dir")
    except pytest.FixtureLookupError:
        pytest.skip("fixture smollm2_tokenizer_dir not defined")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = render_for_rm(tokenizer, "Name a colour.", f"{ACCEPT_TAG}Blue.")
    assert "Name a colour." in text and text.rstrip().endswith("Blue.<|im_end|>")
    assert ACCEPT_TAG not in text
