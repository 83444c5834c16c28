"""Advantage estimators, as pure torch functions.

Outcome-level (one scalar reward per sampled sequence, samples grouped by prompt):
- `group_advantages`: GRPO (Shao et al. 2024, DeepSeekMath) group normalisation, or Dr. GRPO (Liu et al. 2025,
  "Understanding R1-Zero-like training") when `scale_by_std=False`.
- `rloo_advantages`: REINFORCE leave-one-out baseline (Ahmadian et al. 2024, "Back to basics").

Token-level (PPO with a critic, the algorithm the alignment-faking paper used):
- `terminal_reward_to_tokens`: the RLHF convention that the sequence score lands on the last trained token.
- `gae`: generalised advantage estimation (Schulman et al. 2016) over the trained tokens of each row.
- `whiten`: masked standardisation of advantages (as in PPO implementations, e.g. Ziegler et al. 2019 / TRL).

Layout: outcome rewards are flat [G*K], consecutive blocks of K samples of the same prompt (the order the rollout
stage produces). Token tensors are [B, T]; `mask` marks trained (policy-generated) tokens, 1/True = trained.

`gae_advantages`: PPO's advantages for the RLHF setting (Ziegler et al. 2019; Ouyang et al. 2022). The reward-model
score lands on the last trained token of each response, the KL penalty to the reference (when
algo.kl_in=reward) on every trained token, then GAE (Schulman et al. 2016) over trained tokens with the critic's values.
The alignment-faking paper trained its policy with PPO this way. Left out: reward whitening, value-head warm-up.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rl.algo.kl import kl_penalty_in_reward
from rl.algo.losses import check_same_shape


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    """Reshape flat [G*K] rewards to [G, K], with a clear error when the layout is wrong."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be flat [G*K], got shape {tuple(rewards.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}"
        )
    return rewards.float().view(-1, group_size)


def group_advantages(
    rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO outcome advantages: A_i = (r_i - mean(group)) / (std(group) + eps).

    Implements the outcome-supervision advantage of GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 / sec. 4.1.2).
    `scale_by_std=False` gives Dr. GRPO (Liu et al. 2025): A_i = r_i - mean(group), removing the std division that
    over-weights groups whose rewards barely differ.

    The std is the population std (unbiased=False, divide by K), i.e. the z-score within the group. TRL uses the
    Bessel-corrected std; for a fixed K that differs only by the constant factor sqrt((K-1)/K), which the learning rate
    absorbs. A group whose rewards are all equal gets advantage 0 (its std is 0, the numerator is 0).

    Left out: process supervision (per-step rewards), and the batch-level std of some variants (e.g. REINFORCE++).
    Returns a flat [G*K] float tensor; no gradient flows through rewards in practice (they are scores).
    """
    grouped = _grouped(rewards, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)
    return centred.reshape(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO advantages: A_i = r_i - mean_{j != i} r_j (Ahmadian et al. 2024, "Back to basics", eq. 8).

    The baseline for each sample is the mean reward of the other K-1 samples of the same prompt, which keeps the
    REINFORCE estimator unbiased. Equivalent to K/(K-1) * (r_i - mean(group)). No std scaling.
    Left out: the per-token KL-in-reward shaping the paper adds to r_i (do it before calling, see rl/algo/kl.py).
    Needs group_size >= 2.
    """
    if group_size < 2:
        raise ValueError(f"rloo_advantages needs group_size >= 2 (a leave-one-out baseline), got {group_size}")
    grouped = _grouped(rewards, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).reshape(-1)


def terminal_reward_to_tokens(scores: Tensor, mask: Tensor) -> Tensor:
    """Place each sequence score on its last trained token: [B] -> [B, T], zeros elsewhere.

    The RLHF convention (Ziegler et al. 2019; Ouyang et al. 2022): the reward model scores the whole response, and
    that score is the reward of the final action. Works for right padding and for masks with holes (multi-turn
    transcripts where user turns are not trained): the last position with mask=1 gets the score.
    A row with no trained token raises ValueError (its score would silently vanish).
    """
    if scores.dim() != 1 or mask.dim() != 2 or scores.shape[0] != mask.shape[0]:
        raise ValueError(
            f"expected scores [B] and mask [B, T], got {tuple(scores.shape)} and {tuple(mask.shape)}"
        )
    trained = mask.bool()
    empty_rows = (~trained.any(dim=1)).nonzero().flatten().tolist()
    if empty_rows:
        raise ValueError(f"mask rows {empty_rows} have no trained token to carry the score")
    T = mask.shape[1]
    # argmax returns the first maximum: on the flipped mask that is the last trained position.
    last = T - 1 - trained.flip(dims=[1]).int().argmax(dim=1)
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    rewards[torch.arange(mask.shape[0], device=mask.device), last] = scores.float()
    return rewards


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), over the trained tokens of each row.

    delta_t = r_t + gamma * V(next trained token) - V_t; A_t = delta_t + gamma * lam * A(next trained token).
    The trajectory is the sequence of trained tokens only: untrained positions (padding, prompt, user turns between
    model turns) are skipped, neither discounted nor bootstrapped from. The last trained token is terminal
    (V after it = 0): each row is one finished episode.
    Returns (advantages, returns) both [B, T], zero where mask = 0; returns = advantages + values (the critic's
    regression target). Computed without gradient. Left out: truncation bootstrapping (the value of a state after a
    length cut-off); a response cut by max_new_tokens is treated as terminal, as TRL/OpenRLHF do.
    """
    check_same_shape(require_2d=True, rewards=rewards, values=values, mask=mask)
    trained = mask.bool()
    rewards, values = rewards.float(), values.float()
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, device=rewards.device)
    next_advantage = torch.zeros(B, device=rewards.device)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        is_trained = trained[:, t]
        advantages[:, t] = torch.where(is_trained, advantage, torch.zeros_like(advantage))
        # Carry the bootstrap past untrained positions unchanged.
        next_value = torch.where(is_trained, values[:, t], next_value)
        next_advantage = torch.where(is_trained, advantage, next_advantage)
    returns = torch.where(trained, advantages + values, torch.zeros_like(values))
    return advantages, returns


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Standardise x over its trained entries: (x - mean) / sqrt(var + eps), zero where mask = 0.

    The advantage normalisation of PPO implementations (e.g. OpenAI baselines, Ziegler et al. 2019 lm-human-prefs,
    TRL). `shift_mean=False` keeps the mean (only rescales), as lm-human-prefs does for rewards. The variance is the
    population variance (divide by the count), computed over every trained token of the batch.
    """
    trained = mask.bool()
    count = trained.sum()
    if count == 0:
        raise ValueError("whiten: mask selects no entries")
    x = x.float()
    zero = torch.zeros_like(x)
    mean = torch.where(trained, x, zero).sum() / count
    var = torch.where(trained, (x - mean) ** 2, zero).sum() / count
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(trained, out, zero)


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
