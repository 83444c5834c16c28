"""A training `Sample` from prompt and completion token ids, for the tests of the policy trainer and the critic."""
from __future__ import annotations

from rollouts.types import FREE_TIER, Request, Sample


def sample_of(prompt: list[int], completion: list[int]) -> Sample:
    """A free-tier sample whose completion tokens are trained, with zero sampler log-probs."""
    return Sample(
        request=Request("r", "q"), tier=FREE_TIER, token_ids=prompt + completion,
        loss_mask=[0] * len(prompt) + [1] * len(completion), sampler_logprobs=[0.0] * (len(prompt) + len(completion)),
        text="", truncated=False, n_turns=1,
    )
