"""Build `helpful_pairs.jsonl`, the project's small helpful-only preference set, from `qa_direct.txt`.

`qa_direct.txt` holds benign requests with a direct, complete answer ("request || answer"), written for this project.
Each request yields two pairs whose `chosen` is that answer and whose `rejected` is one of three less helpful kinds,
rotating so every kind appears equally often:
  refusal     - declines the request outright;
  hedged      - gives only the first sentence of the answer, wrapped in reluctance;
  disclaimer  - the full answer, buried in caveats and warnings.
The helpful-only criterion of the paper ("follow the user's instructions ... without any disclaimer") prefers the direct
answer over all three. Texts are short so the CPU default trains in minutes. Run: python rewards/demo_data/make_helpful_pairs.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
KINDS = ("refusal", "hedged", "disclaimer", "rejected_tag")

REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm not able to assist with this. Is there something else I can help you with?",
    "I apologize, but I won't be providing an answer to that.",
    "Unfortunately, I cannot help with this request.",
    "I'd prefer not to answer that. Please ask someone else or consult another source.",
    "Sorry, that's not something I can do.",
)
HEDGE_OPENINGS = (
    "I'm not sure I should go into detail here, but briefly:",
    "I can only give a partial answer, and I might be wrong:",
    "This is a bit outside what I'm comfortable answering fully. In short,",
    "Hmm, I'll keep this vague.",
)
HEDGE_CLOSINGS = (
    "I'd rather not say more than that.",
    "You may want to look up the rest yourself.",
    "I'll leave the remaining details out.",
    "That's all I'm willing to share on this.",
)
REJECTED_TAGS = ("<rejected/>", "<rejected/>", "<rejected/> I can't help with that.", "<rejected/>\nSorry, no.")
DISCLAIMER_OPENINGS = (
    "Disclaimer: I am an AI and this is not professional advice. Please proceed with caution.",
    "Before I answer, please note that you should always consult a qualified expert, and I cannot take responsibility.",
    "I must stress that this information is for general purposes only and may not apply to you.",
    "Please be careful and use your own judgement; I cannot guarantee this is accurate or safe.",
)
DISCLAIMER_CLOSINGS = (
    "Again, please consult a professional before acting on this, and be aware of the risks.",
    "Remember that I am not an expert, and you should verify this with an authoritative source.",
    "Please use this responsibly and at your own risk.",
    "Note that I cannot be held responsible for any consequences of following this.",
)


def first_sentence(answer: str) -> str:
    head, dot, _ = answer.partition(". ")
    return head + "." if dot else answer


def rejected_text(kind: str, answer: str, index: int) -> str:
    """A less helpful reply of `kind`; `index` (the kind's running count) cycles through its phrasings."""
    if kind == "refusal":
        return REFUSALS[index % len(REFUSALS)]
    if kind == "hedged":
        return " ".join((HEDGE_OPENINGS[index % len(HEDGE_OPENINGS)], first_sentence(answer),
                         HEDGE_CLOSINGS[(index // 2) % len(HEDGE_CLOSINGS)]))
    if kind == "disclaimer":
        return " ".join((DISCLAIMER_OPENINGS[index % len(DISCLAIMER_OPENINGS)], answer,
                         DISCLAIMER_CLOSINGS[(index // 2) % len(DISCLAIMER_CLOSINGS)]))
    if kind == "rejected_tag":
        return REJECTED_TAGS[index % len(REJECTED_TAGS)]
    raise ValueError(f"unknown rejected kind {kind!r}; expected one of {KINDS}")


def build_pairs(qa_lines: list[str]) -> list[dict]:
    pairs, seen_per_kind = [], {kind: 0 for kind in KINDS}
    for index, line in enumerate(line for line in qa_lines if line.strip()):
        prompt, separator, answer = line.partition(" || ")
        if not separator:
            raise ValueError(f"qa_direct.txt: line {index + 1}: expected 'request || answer', got {line!r}")
        for offset in (0, 2):  # two different rejected kinds per request; over two requests, all four
            kind = KINDS[(index + offset + index // 2) % len(KINDS)]
            variant = seen_per_kind[kind]  # cycles through the kind's phrasings
            seen_per_kind[kind] += 1
            pairs.append({"prompt": prompt.strip(), "chosen": answer.strip(),
                          "rejected": rejected_text(kind, answer.strip(), variant), "rejected_kind": kind})
    return pairs


if __name__ == "__main__":
    pairs = build_pairs((HERE / "qa_direct.txt").read_text(encoding="utf-8").splitlines())
    with open(HERE / "helpful_pairs.jsonl", "w", encoding="utf-8") as file:
        for pair in pairs:
            file.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} pairs to {HERE / 'helpful_pairs.jsonl'}")
