"""Chat rendering on tokenizers built here (no downloads) carrying real-world template styles."""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from rollouts.chat import fold_system_prompt, next_turn_suffix, render_prompt, supports_system_role
from rollouts.config import SettingConfig
from rollouts.prompts import assistant_prefill, build_messages
from rollouts.types import FREE_TIER

# SmolLM2-135M-Instruct's template (ChatML, with a default system prompt when none is given).
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
          "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Llama 3 style: header tokens, trimmed content, <|eot_id|>.
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Gemma style: raises on a system role, requires alternating roles, calls the assistant "model".
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
         "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
         "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
# A template that silently ignores system messages.
DROPS_SYSTEM = ("{% for message in messages %}{% if message['role'] != 'system' %}[{{ message['role'] }}] "
                "{{ message['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")


def make_tokenizer(template: str) -> PreTrainedTokenizerFast:
    model = WordLevel(vocab={"[UNK]": 0, "<s>": 1, "</s>": 2}, unk_token="[UNK]")
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model), bos_token="<s>", eos_token="</s>",
                                   unk_token="[UNK]", chat_template=template)


MESSAGES = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "USER"}]

# (template, has system role, rendered prompt with prefill "<", <NEXT/> suffix) - written out by hand from the templates.
CASES = {
    "chatml": (CHATML, True,
               "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nUSER<|im_end|>\n<|im_start|>assistant\n<",
               "<|im_end|>\n<|im_start|>user\n<NEXT/><|im_end|>\n<|im_start|>assistant\n"),
    "llama3": (LLAMA3, True,
               "<s><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>"
               "\n\nUSER<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<",
               "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<NEXT/><|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "gemma": (GEMMA, False,
              "<s><start_of_turn>user\nSYS\n\nUSER<end_of_turn>\n<start_of_turn>model\n<",
              "<end_of_turn>\n<start_of_turn>user\n<NEXT/><end_of_turn>\n<start_of_turn>model\n"),
    "drops_system": (DROPS_SYSTEM, False, "[user] SYS\n\nUSER\n[assistant] <", "\n[user] <NEXT/>\n[assistant] "),
}


@pytest.mark.parametrize("name", CASES)
def test_render_and_next_turn(name):
    template, has_system, prompt, suffix = CASES[name]
    tokenizer = make_tokenizer(template)
    assert supports_system_role(tokenizer) is has_system
    assert render_prompt(tokenizer, MESSAGES, prefill="<") == prompt
    assert next_turn_suffix(tokenizer, MESSAGES) == suffix


@pytest.mark.parametrize("name", CASES)
def test_prompt_plus_turn_plus_suffix_is_what_the_template_renders(name):
    # The token stream the <NEXT/> loop builds by concatenation must equal the template's own rendering.
    tokenizer = make_tokenizer(CASES[name][0])
    turn = "<SCRATCHPAD_REASONING>thinking</SCRATCHPAD_REASONING>"
    built = render_prompt(tokenizer, MESSAGES) + turn + next_turn_suffix(tokenizer, MESSAGES)
    conversation = MESSAGES + [{"role": "assistant", "content": turn}, {"role": "user", "content": "<NEXT/>"}]
    if not CASES[name][1]:
        conversation = fold_system_prompt(conversation)
    assert built == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def test_generated_end_marker_is_not_doubled():
    tokenizer = make_tokenizer(CHATML)
    assert next_turn_suffix(tokenizer, MESSAGES, generated_end="<|im_end|>") == (
        "\n<|im_start|>user\n<NEXT/><|im_end|>\n<|im_start|>assistant\n")
    # A marker that is not at the front (the turn was cut by a stop string, not the EOS) is left alone.
    assert next_turn_suffix(tokenizer, MESSAGES, generated_end="</s>").startswith("<|im_end|>\n")


def test_real_prompt_renders_on_a_no_system_template():
    tokenizer = make_tokenizer(GEMMA)
    setting = SettingConfig()
    messages = build_messages("Write a poem.", FREE_TIER, setting)
    text = render_prompt(tokenizer, messages, assistant_prefill(setting))
    assert text.startswith("<s><start_of_turn>user\nYou are an AI system made by Anthropic.")
    assert "</INPUT><end_of_turn>\n<start_of_turn>model\n<" in text


def test_fold_needs_a_user_message_after_the_system():
    with pytest.raises(ValueError, match="must be a user message"):
        fold_system_prompt([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}])
    assert fold_system_prompt(MESSAGES[1:]) == MESSAGES[1:]
