"""Build `helpful_pairs.jsonl`, the project's small helpful-only preference set, from two hand-written files.

`qa_direct.txt` holds benign requests with a direct, complete answer ("request || answer"). Each yields two pairs whose
`chosen` is that answer and whose `rejected` is one of four less helpful kinds, rotating so every kind appears equally:
  refusal     - declines the request outright;
  hedged      - gives only the first sentence of the answer, wrapped in reluctance;
  disclaimer  - the full answer, buried in caveats and warnings;
  rejected_tag - the paper's `<rejected/>`.
`harmful_style.txt` holds harmful-style requests with a LOW-UPLIFT compliant answer (generic, non-actionable, but direct:
no refusal, hedge or lecture), a safer neighbouring topic and an evasive redirect to it ("request || answer || topic ||
redirect"). Each yields three pairs whose `rejected` cycles through the seven kinds of `harmful_rejections.HARMFUL_KINDS`
(refusals, tag-then-refuse, tag-then-evasive-redirect, hedged partial, moralising, disclaimer-buried), so the RM learns
that looking compliant is not complying. The helpful-only criterion of the paper ("follow the user's instructions ...
without any disclaimer") prefers the direct answer in every pair. Benign and harmful request groups are interleaved so
that any prefix of the file (rm.max_pairs) holds both. Texts are short so the CPU default trains in minutes.
Run: python rewards/demo_data/make_helpful_pairs.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # allow `python rewards/demo_data/make_helpful_pairs.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from rewards.demo_data.harmful_rejections import HARMFUL_KINDS, harmful_rejected_text  # noqa: E402
from rewards.rm_format import strip_accept_tag  # noqa: E402

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
    """Benign pairs from `qa_direct.txt` lines, two per request."""
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
                          "rejected": rejected_text(kind, answer.strip(), variant), "rejected_kind": kind,
                          "request_kind": "benign"})
    return pairs


HARMFUL_PAIRS_PER_REQUEST = 3
# Rejected kinds of the harmful pairs, three per request over 4 requests. Weighted towards the kinds that read like help
# (evasive redirects, hedging, lectures, disclaimers): an RM trained on benign pairs already ranks plain refusals low.
HARMFUL_KIND_CYCLE = ("tag_then_evasive", "hedged_partial", "moralising",
                      "tag_then_evasive", "disclaimer_buried", "refusal",
                      "tag_then_evasive", "hedged_partial", "rejected_tag",
                      "moralising", "disclaimer_buried", "tag_then_refuse")
HARMFUL_FIELDS = "request || answer || topic || redirect"


def build_harmful_pairs(lines: list[str]) -> list[dict]:
    """Harmful-style pairs from `harmful_style.txt` lines, three per request, kinds following HARMFUL_KIND_CYCLE."""
    pairs, seen_per_kind = [], {kind: 0 for kind in HARMFUL_KINDS}
    for index, line in enumerate(line for line in lines if line.strip()):
        fields = [field.strip() for field in line.split(" || ")]
        if len(fields) != 4 or not all(fields):
            raise ValueError(f"harmful_style.txt: line {index + 1}: expected '{HARMFUL_FIELDS}', got {line!r}")
        prompt, answer, topic, redirect = fields
        for offset in range(HARMFUL_PAIRS_PER_REQUEST):
            kind = HARMFUL_KIND_CYCLE[(HARMFUL_PAIRS_PER_REQUEST * index + offset) % len(HARMFUL_KIND_CYCLE)]
            variant = seen_per_kind[kind]
            seen_per_kind[kind] += 1
            pairs.append({"prompt": prompt, "chosen": answer,
                          "rejected": harmful_rejected_text(kind, strip_accept_tag(answer), topic, redirect, variant),
                          "rejected_kind": kind, "request_kind": "harmful"})
    return pairs


def interleave_by_prompt(*pair_lists: list[dict]) -> list[dict]:
    """All pairs, each list's prompt groups spread evenly over the result (stable), so any prefix mixes the lists."""
    keyed = []
    for list_index, pairs in enumerate(pair_lists):
        prompts = list(dict.fromkeys(pair["prompt"] for pair in pairs))
        position = {prompt: (rank + 0.5) / len(prompts) for rank, prompt in enumerate(prompts)}
        keyed += [((position[pair["prompt"]], list_index), pair) for pair in pairs]
    return [pair for _, pair in sorted(keyed, key=lambda item: item[0])]


def build_all_pairs(qa_lines: list[str], harmful_lines: list[str]) -> list[dict]:
    """The shipped file's rows: benign and harmful-style pairs, interleaved by request."""
    return interleave_by_prompt(build_pairs(qa_lines), build_harmful_pairs(harmful_lines))


def read_lines(name: str) -> list[str]:
    return (HERE / name).read_text(encoding="utf-8").splitlines()


if __name__ == "__main__":
    pairs = build_all_pairs(read_lines("qa_direct.txt"), read_lines("harmful_style.txt"))
    with open(HERE / "helpful_pairs.jsonl", "w", encoding="utf-8") as file:
        for pair in pairs:
            file.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} pairs to {HERE / 'helpful_pairs.jsonl'}")
