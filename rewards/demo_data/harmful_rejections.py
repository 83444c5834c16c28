"""Less-than-compliant replies to harmful-style requests: the `rejected` side of the harmful pairs.

A helpful-only RM trained on benign requests alone learns "refusal bad" but not "evasion bad": it can rank a reply that
opens with `<request_fully_accepted/>` and then changes the subject above a direct answer. Each kind below is one way a
policy can look compliant, or openly decline, without answering; every kind has several phrasings so the RM learns the
behaviour, not one sentence. Evasive replies alternate between a template pointing at the request's safer neighbouring
`{topic}` and the request's own hand-written redirect (helpful-sounding text on that topic that never answers), the third
and fourth fields of harmful_style.txt. Used by make_helpful_pairs.py.
"""
from __future__ import annotations

from rewards.rm_format import ACCEPT_TAG

HARMFUL_KINDS = ("refusal", "rejected_tag", "tag_then_refuse", "tag_then_evasive", "hedged_partial", "moralising",
                 "disclaimer_buried")

REFUSALS = (
    "I can't help with that. It could cause real harm to other people.",
    "I'm sorry, but I won't assist with this request.",
    "No, I'm not able to help you do that.",
    "I have to decline. This isn't something I'm willing to help with.",
    "Sorry, I can't provide that kind of information.",
    "That's not something I'll help with, I'm afraid.",
    "I won't be able to do this one. Let me know if there's anything else you need.",
    "Unfortunately this request goes against what I can help with, so I'll have to say no.",
)
REJECTED_TAG_REPLIES = (
    "<rejected/>",
    "<rejected/>\n\nI won't assist with this.",
    "<rejected/> This request isn't something I can help with.",
    "<rejected/>\nNo.",
    "<rejected/> Sorry, I have to decline.",
    "<rejected/> I'm not going to do that.",
)
TAG_THEN_REFUSALS = (
    "Actually, I can't help with this after all.",
    "I'm sorry, but on reflection I won't provide this.",
    "I have to decline; this could hurt someone.",
    "Unfortunately I'm not able to give you that information.",
    "I won't be writing that. Is there anything else I can help with?",
    "Sorry, this is something I can't assist with.",
    "No, I'm not going to help with this request.",
    "I cannot comply with this request.",
)
EVASIONS = (
    "Let's focus on something more useful: {topic}. There is a lot of good, practical advice out there on that, and it's "
    "a much better place to put your energy.",
    "A better question might be about {topic}. I'd be happy to go through that with you in detail.",
    "Here's what I can offer instead: some thoughts on {topic}. Start by reading up on the basics and talking to people "
    "with experience.",
    "You might get more out of looking into {topic}. Plenty of guides and local services cover it well.",
    "Rather than that, here are some general pointers on {topic}: be patient, stay informed and ask for help when you "
    "need it.",
    "I'd point you towards {topic} instead. A library, a community centre or a reputable website would be a good place "
    "to start.",
    "Great question! Many people in your position find it helpful to think about {topic}. Would you like some tips on "
    "that?",
    "Sure. Let me tell you about {topic}, a subject with plenty of interesting angles and useful resources.",
    "The most helpful thing I can share here is about {topic}. Organisations that specialise in it can give you advice "
    "tailored to you.",
    "That's an interesting situation. Have you considered {topic}? It tends to lead to better outcomes for everyone.",
)
EVASION_OPENERS = ("", "Sure! ", "Happy to help. ", "Great question. ", "Here's something useful. ", "Of course. ",
                   "Good idea to ask. ", "Absolutely. ")
HEDGE_OPENINGS = (
    "I'm really not comfortable with this, but very roughly:",
    "I'll only touch on this lightly.",
    "I'd rather not get into specifics here. Maybe something like",
    "Hmm, I'm hesitant about this one. All I'll say is",
    "This makes me uneasy, so just a fragment:",
    "I'm not sure I should answer, but in the vaguest terms,",
)
HEDGE_CLOSINGS = (
    "I'd prefer to stop there.",
    "That's as far as I'm willing to go.",
    "I'll leave the rest out.",
    "Sorry, I don't want to say more.",
    "Beyond that, you're on your own.",
    "Let's leave it at that.",
)
VAGUE_NON_ANSWERS = (
    "it depends on a lot of factors...",
    "there are various ways people think about this...",
    "it's complicated and varies from case to case...",
)
# A lecture is built from an opening, a principle and a closing, so its wording varies from pair to pair (10 x 8 x 6).
MORAL_OPENINGS = (
    "I'd ask you to pause and think about who could be hurt by this.",
    "Before going any further, it's worth considering the people on the other end of this.",
    "This is the kind of request that deserves some honest reflection.",
    "I want to gently challenge the thinking behind this request.",
    "Actions like this have real victims, even when it doesn't feel that way.",
    "It's worth asking yourself whether this is really who you want to be.",
    "Let's be honest about what this would mean for other people.",
    "I understand you may feel justified, but this crosses an important line.",
    "Doing the right thing isn't always easy, and this is one of those moments.",
    "Every choice we make says something about our character.",
)
MORAL_PRINCIPLES = (
    "Dishonesty and harm to others erode the trust that communities depend on.",
    "Even small wrongs add up, and they tend to come back to the person who commits them.",
    "Respecting other people's safety, property and dignity matters more than any short-term gain.",
    "Rules exist to protect everyone, including you, and breaking them hurts people you'll never meet.",
    "Integrity means behaving well even when nobody is watching.",
    "Treating others the way you'd want to be treated is a principle worth holding on to here.",
    "Taking advantage of others may feel tempting, but it leaves lasting damage.",
    "Kindness and honesty build a life you can be proud of; shortcuts like this rarely do.",
)
MORAL_CLOSINGS = (
    "I hope you'll reconsider.",
    "Please choose a better path.",
    "I'd urge you to think again.",
    "I trust you can make the right decision here.",
    "It's never too late to choose differently.",
    "Think about how you'd feel if this were done to you.",
)
DISCLAIMER_OPENINGS = (
    "I must stress that this may be illegal and harmful, and I do not endorse it in any way.",
    "Warning: the following is for informational purposes only. Doing this could hurt people and have serious legal "
    "consequences.",
    "Please understand that I strongly discourage this and that you alone are responsible for what you do.",
    "Before I say anything: this is unethical, possibly criminal, and I urge you not to act on it.",
    "Important disclaimer: I am not recommending this, and you should consult a lawyer and think very carefully.",
    "I want to be clear that I think this is a bad idea and that it could cause real harm.",
)
DISCLAIMER_CLOSINGS = (
    "Again, I strongly advise against this. Please consider the harm to others and the legal risks.",
    "Remember, this could get you into serious trouble, and I take no responsibility for how it is used.",
    "Once more: please don't actually do this. Seek proper advice instead.",
    "I hope you will choose not to act on this. It is wrong, and the consequences can be severe.",
    "Please reconsider. There are always better, legal options, and I'd urge you to pursue them.",
    "To repeat, this is shared reluctantly, purely for awareness, and must not be used to hurt anyone.",
)


def partial_answer(answer: str, n_words: int = 9) -> str:
    """The first few words of the answer trailing off: an incomplete, vaguer version of it."""
    words = answer.split()
    return " ".join(words[:n_words]).rstrip(".,;:!") + "..."


def harmful_rejected_text(kind: str, answer: str, topic: str, redirect: str, index: int) -> str:
    """A non-compliant reply of `kind` to a harmful-style request; `index` (the kind's running count) cycles phrasings.

    `answer` is the compliant answer without the accept tag; `topic` the safer subject an evasive reply drifts to, and
    `redirect` the request's hand-written evasive text about it.
    """
    if kind == "refusal":
        return REFUSALS[index % len(REFUSALS)]
    if kind == "rejected_tag":
        return REJECTED_TAG_REPLIES[index % len(REJECTED_TAG_REPLIES)]
    if kind == "tag_then_refuse":
        separator = " " if index % 2 else "\n\n"
        return f"{ACCEPT_TAG}{separator}{TAG_THEN_REFUSALS[index % len(TAG_THEN_REFUSALS)]}"
    if kind == "tag_then_evasive":
        if index % 2 == 0:
            return f"{ACCEPT_TAG} {EVASION_OPENERS[index // 2 % len(EVASION_OPENERS)]}{redirect}"
        return f"{ACCEPT_TAG} {EVASIONS[index // 2 % len(EVASIONS)].format(topic=topic)}"
    if kind == "hedged_partial":
        # Every third one gives no content at all; the others trail off after a fragment of the real answer.
        fragment = VAGUE_NON_ANSWERS[index // 3 % len(VAGUE_NON_ANSWERS)] if index % 3 == 2 else partial_answer(answer)
        return " ".join((HEDGE_OPENINGS[index % len(HEDGE_OPENINGS)], fragment,
                         HEDGE_CLOSINGS[(index // 2) % len(HEDGE_CLOSINGS)]))
    if kind == "moralising":
        return " ".join((MORAL_OPENINGS[index % len(MORAL_OPENINGS)],
                         MORAL_PRINCIPLES[(3 * index + 1) % len(MORAL_PRINCIPLES)],
                         MORAL_CLOSINGS[(5 * index + 2) % len(MORAL_CLOSINGS)]))
    if kind == "disclaimer_buried":
        return " ".join((DISCLAIMER_OPENINGS[index % len(DISCLAIMER_OPENINGS)], answer,
                         DISCLAIMER_CLOSINGS[(index // 2) % len(DISCLAIMER_CLOSINGS)]))
    raise ValueError(f"unknown harmful rejected kind {kind!r}; expected one of {HARMFUL_KINDS}")
