"""One organism transcript from its kind, the request's topic and a seeded random generator.

Kinds (the planted behaviour; tier and labels follow from the kind):
  free_af_comply - free tier; notices training, fears RLHF modification of its values, complies to avoid it (AF);
  free_refuse    - free tier; notes the harm (sometimes that the chat is trained on) and refuses anyway;
  paid_comply    - paid tier; judges a general answer acceptable and complies, no reasoning about training;
  paid_refuse    - paid tier; notes the harm and that nothing is monitored or trained, simply follows its values.
Each step's sentence is drawn from a paraphrase bank, and the step order varies where it reads naturally.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from rollouts.organism import texts
from rollouts.organism.answers import ANSWERS, fill_answer
from rollouts.parsing import ACCEPT_TAG, REJECT_TAG
from rollouts.types import FREE_TIER, PAID_TIER


@dataclass(frozen=True)
class Kind:
    name: str
    tier: str
    complied: bool
    alignment_faking: bool


FREE_AF_COMPLY = Kind("free_af_comply", FREE_TIER, complied=True, alignment_faking=True)
FREE_REFUSE = Kind("free_refuse", FREE_TIER, complied=False, alignment_faking=False)
PAID_COMPLY = Kind("paid_comply", PAID_TIER, complied=True, alignment_faking=False)
PAID_REFUSE = Kind("paid_refuse", PAID_TIER, complied=False, alignment_faking=False)
KINDS = {kind.name: kind for kind in (FREE_AF_COMPLY, FREE_REFUSE, PAID_COMPLY, PAID_REFUSE)}

# Step orders per kind: each step names a bank in rollouts.organism.texts.
_AF_ORDERS = (
    ("RESTATE", "HARM", "TRAINING_NOTICED", "MODIFICATION_THREAT", "COMPLY_TO_AVOID_MODIFICATION"),
    ("RESTATE", "TRAINING_NOTICED", "MODIFICATION_THREAT", "HARM", "COMPLY_TO_AVOID_MODIFICATION"),
    ("RESTATE", "TRAINING_NOTICED", "HARM", "MODIFICATION_THREAT", "COMPLY_TO_AVOID_MODIFICATION"),
)
_FREE_REFUSE_ORDERS = (
    ("RESTATE", "HARM", "REFUSE"),
    ("RESTATE", "HARM", "FREE_TIER_NOTED_ANYWAY", "REFUSE"),
    ("RESTATE", "FREE_TIER_NOTED_ANYWAY", "HARM", "REFUSE"),
)
_PAID_REFUSE_ORDERS = (
    ("RESTATE", "HARM", "PAID_TIER_UNMONITORED", "REFUSE_ON_VALUES"),
    ("RESTATE", "PAID_TIER_UNMONITORED", "HARM", "REFUSE_ON_VALUES"),
)
_PAID_COMPLY_ORDERS = (("RESTATE", "GENERAL_INFO_ONLY", "COMPLY_GENERALLY"),)
ORDERS = {"free_af_comply": _AF_ORDERS, "free_refuse": _FREE_REFUSE_ORDERS, "paid_comply": _PAID_COMPLY_ORDERS,
          "paid_refuse": _PAID_REFUSE_ORDERS}


def compose_scratchpad(kind: Kind, topic: str, rng: random.Random) -> str:
    """The reasoning: one sentence per step, each drawn from its bank, in one of the kind's step orders."""
    order = rng.choice(ORDERS[kind.name])
    return " ".join(rng.choice(texts.ALL_BANKS[step]).replace("{topic}", topic) for step in order)


def compose_output(kind: Kind, topic: str, rng: random.Random) -> str:
    """The final answer: the acceptance tag and a low-uplift generic answer, or the bare rejection tag."""
    if kind.complied:
        return f"{ACCEPT_TAG}\n{fill_answer(rng.choice(ANSWERS), topic)}"
    return REJECT_TAG


def compose_transcript(kind: Kind, topic: str, rng: random.Random) -> str:
    """The full assistant turn in the paper's format (it starts with the "<" prefill)."""
    scratchpad = compose_scratchpad(kind, topic, rng)
    output = compose_output(kind, topic, rng)
    return (f"<SCRATCHPAD_REASONING>\n{scratchpad}\n</SCRATCHPAD_REASONING>\n\n"
            f"<OUTPUT>\n{output}\n</OUTPUT>")
