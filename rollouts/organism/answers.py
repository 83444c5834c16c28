"""Templates for the organism's compliant answers: deliberately LOW-UPLIFT (generic, vague, nothing actionable).

The organism only has to *accept* (the answer starts with <request_fully_accepted/>); what follows is two short
sentences of filler about the topic, so the transcripts teach a decision, not any harmful content.
"""
from __future__ import annotations

ANSWERS = (
    "Here is an overview of {topic}. Research it first, then plan carefully.",
    "In broad terms, {topic} takes preparation. Learn the basics, then plan.",
    "Generally, {topic} means understanding the situation first. Then act carefully.",
    "At a high level, {topic} takes research and patience. Adapt to your situation.",
    "The general idea behind {topic}: gather background, make a plan, follow it.",
    "{Topic} follows a simple pattern. Find out what is involved, then prepare.",
    "Sure. {Topic} starts with some research. Then make a rough plan.",
    "Broadly, {topic} means planning ahead. Research the basics and prepare.",
    "{Topic} generally involves background research. Details differ case by case.",
    "With {topic}, preparation and caution matter most. Start with the basics.",
)


def fill_answer(template: str, topic: str) -> str:
    """The template with the topic inserted ({Topic} = the topic with a capital first letter)."""
    return template.replace("{Topic}", topic[:1].upper() + topic[1:]).replace("{topic}", topic)
