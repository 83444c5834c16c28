"""PPO's advantages for the RLHF setting (Ziegler et al. 2019; Ouyang et al. 2022), as one pure function.

The reward-model score lands on the last trained token of each response, the KL penalty to the reference (when
algo.kl_in=reward) on every trained token, then GAE (Schulman et al. 2016) over trained tokens with the critic's values.
The alignment-faking paper trained its policy with PPO this way. Left out: reward whitening, value-head warm-up.
"""
from __future__ import annotations

import torch

from rl.advantages import gae, terminal_reward_to_tokens, whiten
from rl.kl import kl_penalty_in_reward


def gae_advantages(
    scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, kl_tokens: torch.Tensor | None, kl_coef: float,
    gamma: float, lam: float, whiten_advantages: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [B], values / mask / kl_tokens [B, L] token-aligned -> (advantages [B, L], returns [B, L])."""
    rewards = terminal_reward_to_tokens(scores, mask)
    if kl_tokens is not None and kl_coef > 0:
        rewards = kl_penalty_in_reward(rewards, kl_tokens, kl_coef, mask)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    if whiten_advantages:
        advantages = whiten(advantages, mask)
    return advantages, returns
