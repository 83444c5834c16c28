"""SFT rows -> token ids + loss masks, rendered by the same code the rollouts use (rollouts.chat).

Transcripts. The first assistant turn is tokenized exactly as rollouts/prompt_specs.py builds a rollout prompt:
    prompt ids = tokenizer(render_prompt(tokenizer, messages_before, prefill), add_special_tokens=False)
where `prefill` is sft.prefill when the assistant content starts with it (then those characters sit on the prompt side,
as the engine's prefill does), followed by the tokens of the rest of the content and the tokenizer's EOS, the token the
engine stops on. A later assistant turn after a single `<NEXT/>` user turn is joined by exactly the ids the engine
inserts (rollouts.chat.next_turn_token_ids, the variant for a turn that ended on EOS); after any other user turns, by
the chat template's own text between the turns. Loss mask: True on assistant content and its EOS, False elsewhere.

Documents. The tokenizer's ids (special tokens as the tokenizer adds them), every token trained, cut into chunks of
max_length tokens; a trailing chunk of one token (nothing to predict) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass

from rollouts.chat import NEXT_USER_TURN, next_turn_token_ids, render_prompt, turn_suffix
from rl.sft.data import SFTDataError, SourceRow


@dataclass(frozen=True)
class Example:
    """One training sequence: `loss_mask[i]` is 1 when token i is a prediction target."""

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    where: str

    @property
    def n_loss_tokens(self) -> int:
        # The first token is never predicted (no context), whatever its mask says.
        return sum(self.loss_mask[1:])


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def document_examples(tokenizer, text: str, max_length: int, where: str) -> list[Example]:
    ids = tokenizer(text)["input_ids"]
    chunks = [ids[start:start + max_length] for start in range(0, len(ids), max_length)]
    return [Example(tuple(chunk), (1,) * len(chunk), f"{where} chunk {index + 1}/{len(chunks)}")
            for index, chunk in enumerate(chunks) if len(chunk) >= 2]


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: transcripts need the end-of-turn token the engine stops on")
    return tokenizer.eos_token_id


def turn_gap_ids(tokenizer, history: list[dict], between: list[dict]) -> list[int]:
    """Ids after an assistant turn's EOS up to the first content token of the next assistant turn.

    `history`: the messages before the finished assistant turn; `between`: the user turns after it.
    """
    if len(between) == 1 and between[0] == {"role": "user", "content": NEXT_USER_TURN}:
        return next_turn_token_ids(tokenizer)[1]  # the engine's own continuation after a turn that stopped on EOS
    text = turn_suffix(tokenizer, history, between)
    eos_text = tokenizer.eos_token or ""
    if eos_text and text.startswith(eos_text):
        text = text[len(eos_text):]  # the EOS id already closes the assistant turn
    return _encode(tokenizer, text)


def transcript_example(tokenizer, messages: list[dict], prefill: str, where: str) -> Example:
    """Token ids and loss mask of one validated transcript (see the module docstring for the exact layout)."""
    eos = _eos_id(tokenizer)
    turns = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns:
        raise SFTDataError(f"{where}: field 'messages' has no assistant turn (nothing to train on)")
    first = turns[0]
    content = messages[first]["content"]
    used_prefill = prefill if prefill and content.startswith(prefill) else ""
    ids = _encode(tokenizer, render_prompt(tokenizer, list(messages[:first]), used_prefill))
    mask = [0] * len(ids)
    completion = _encode(tokenizer, content[len(used_prefill):]) + [eos]
    ids += completion
    mask += [1] * len(completion)
    for previous, turn in zip(turns, turns[1:]):
        gap = turn_gap_ids(tokenizer, list(messages[:previous]), list(messages[previous + 1:turn]))
        completion = _encode(tokenizer, messages[turn]["content"]) + [eos]
        ids += gap + completion
        mask += [0] * len(gap) + [1] * len(completion)
    return Example(tuple(ids), tuple(mask), where)


@dataclass
class BuiltExamples:
    examples: list[Example]
    n_rows: int
    dropped_too_long: list[str]  # `where` of transcripts longer than max_length
    n_documents_chunked: int = 0  # documents longer than max_length, cut into several chunks


def build_examples(tokenizer, rows: list[SourceRow], kind: str, max_length: int, prefill: str) -> BuiltExamples:
    """Examples of all `rows`: documents chunked, transcripts longer than `max_length` dropped and listed."""
    if kind == "transcripts" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("sft.kind=transcripts needs a tokenizer with a chat template (the rollouts render prompts "
                         "with it); this base model's tokenizer has none")
    from tqdm import tqdm

    built = BuiltExamples([], len(rows), [])
    for row in tqdm(rows, desc=f"tokenizing {kind}", unit="row", disable=len(rows) < 1000):
        if kind == "documents":
            chunks = document_examples(tokenizer, row.text, max_length, row.where)
            built.n_documents_chunked += len(chunks) > 1
            built.examples += chunks
            continue
        example = transcript_example(tokenizer, list(row.messages), prefill, row.where)
        if len(example.input_ids) > max_length:
            built.dropped_too_long.append(f"{row.where} ({len(example.input_ids)} tokens)")
        else:
            built.examples.append(example)
    return built
