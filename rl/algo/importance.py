"""Truncated importance sampling (TIS) for the sampler/trainer mismatch.

Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training": vLLM's kernels and
precision give token probabilities pi_sampler(theta_old) that differ from the trainer's pi_trainer(theta_old) for the
same weights, so "on-policy" PPO/GRPO is in fact off-policy. Their fix weighs each token's policy-gradient term by
w_t = min(pi_trainer(y_t) / pi_sampler(y_t), C), both at theta_old, detached (token-level TIS; they use C = 2).
Pass the weights as `is_weights` to rl.algo.losses.clipped_policy_loss.

Left out: sequence-level IS and masked IS (MIS, dropping tokens/sequences over the cap), and a lower truncation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rl.algo.losses import check_same_shape, masked_mean


@torch.no_grad()
def truncated_is_weights(
    trainer_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor, cap: float
) -> tuple[Tensor, dict[str, float]]:
    """Token-level TIS weights min(exp(trainer - sampler), cap), detached, [B, T]; 1 where mask = 0 (a neutral factor).

    `trainer_logprobs`: the trainer's log-probs of the sampled tokens at the weights that sampled them (the PPO
    "old" log-probs). `sampler_logprobs`: the log-probs vLLM reported for those tokens (same temperature, see
    rl.algo.logprobs.token_logprobs). Stats over trained tokens, to log every step as a health check of the mismatch:
    tis_ratio_mean, tis_ratio_max (before the cap), tis_capped_frac, tis_abs_logprob_diff_mean.
    """
    check_same_shape(trainer_logprobs=trainer_logprobs, sampler_logprobs=sampler_logprobs, mask=mask)
    if cap <= 0:
        raise ValueError(f"TIS cap must be > 0, got {cap}")
    trained = mask.bool()
    log_ratio = torch.where(trained, trainer_logprobs.float() - sampler_logprobs.float(), torch.zeros_like(trainer_logprobs, dtype=torch.float32))
    ratio = torch.exp(log_ratio)
    weights = torch.clamp(ratio, max=cap)
    max_ratio = ratio[trained].max().item() if trained.any() else 1.0
    stats = {
        "tis_ratio_mean": masked_mean(ratio, trained).item(),
        "tis_ratio_max": max_ratio,
        "tis_capped_frac": masked_mean((ratio > cap).float(), trained).item(),
        "tis_abs_logprob_diff_mean": masked_mean(log_ratio.abs(), trained).item(),
    }
    return weights, stats
