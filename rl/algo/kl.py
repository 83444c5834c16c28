"""KL to the frozen reference policy: per-token estimators, where the penalty goes, and its coefficient.

Estimators (Schulman 2020, "Approximating KL divergence", http://joschu.net/blog/kl-approx.html) of
KL(pi || ref) from tokens sampled from pi, with log r = ref_logprob - logprob (r = ref / pi):
- k1 = -log r                  unbiased, high variance, can be negative per token;
- k2 = (log r)^2 / 2           biased, low variance, always >= 0;
- k3 = (r - 1) - log r         unbiased, low variance, always >= 0 (GRPO's choice, Shao et al. 2024, eq. 4).

Two places to put the penalty, both supported:
- KL in the reward (PPO-RLHF, Ziegler et al. 2019; Ouyang et al. 2022): `kl_penalty_in_reward` subtracts
  coef * KL_t from each token's reward before GAE (or, for GRPO/RLOO, the caller subtracts coef * sum_t KL_t from
  the sequence score before group normalisation). The KL is a detached number: it shapes the advantages, the
  gradient comes through the policy-gradient term.
- KL in the loss (GRPO, Shao et al. 2024): the caller adds coef * aggregate_token_loss(kl_estimate(...), mask, mode)
  to the policy loss, and the gradient flows through `logprobs`. Note (Tang & Munos 2025, "On a few pitfalls in KL
  gradient estimation"): as a loss, k2's gradient is the on-policy gradient of reverse KL, while k3's is not exactly;
  k3 remains the common default for GRPO.

Coefficient: `FixedKLController` or `AdaptiveKLController` (Ziegler et al. 2019, sec. 2.2).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, kind: str) -> Tensor:
    """Per-token estimate [B, T] of KL(pi || ref) for tokens sampled from pi: "k1", "k2" or "k3" (see module docstring).

    Gradients flow through both arguments (the caller detaches `ref_logprobs`, which come from a frozen model).
    No clamping: k3 = exp(log r) - 1 - log r grows exponentially when ref is far more likely than pi on a sampled token;
    mask untrained positions afterwards (with `where`, see rl/losses.masked_mean), since padding can hold any value.
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs and ref_logprobs must share a shape, got {tuple(logprobs.shape)} and {tuple(ref_logprobs.shape)}")
    log_ratio = ref_logprobs - logprobs  # log(ref / pi)
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.exp(log_ratio) - 1.0 - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {KL_ESTIMATORS}")


def kl_penalty_in_reward(scores_per_token: Tensor, kl_per_token: Tensor, coef: float, mask: Tensor | None = None) -> Tensor:
    """Per-token reward with the KL penalty folded in: r_t = score_t - coef * KL_t (Ziegler et al. 2019, eq. 2).

    `scores_per_token` is usually `terminal_reward_to_tokens(scores, mask)` (score on the last trained token);
    `kl_per_token` usually `kl_estimate(logprobs, ref_logprobs, "k1")` (the original's choice). The KL is detached:
    in this placement it is part of the reward, not a differentiable loss term. Zero where `mask` is 0 when given.
    """
    if scores_per_token.shape != kl_per_token.shape:
        raise ValueError(
            f"scores_per_token and kl_per_token must share a shape, got {tuple(scores_per_token.shape)} and {tuple(kl_per_token.shape)}"
        )
    rewards = scores_per_token - coef * kl_per_token.detach()
    if mask is not None:
        rewards = torch.where(mask.bool(), rewards, torch.zeros_like(rewards))
    return rewards


class FixedKLController:
    """A constant KL coefficient (GRPO's beta, Shao et al. 2024). `update` is a no-op, so both controllers are interchangeable."""

    def __init__(self, coef: float):
        if coef < 0:
            raise ValueError(f"KL coef must be >= 0, got {coef}")
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = _checked_coef(state)


def _checked_coef(state: dict) -> float:
    """The saved coefficient, refused when it is not a finite number >= 0 (a checkpoint of a run whose KL went NaN)."""
    value = state.get("value") if isinstance(state, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"KL controller state: value must be a finite number >= 0, got {value!r}")
    return float(value)


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019 ("Fine-tuning language models from human preferences", sec. 2.2).

    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon).
    `current_kl` must be in the same unit as `target` (the paper: KL summed over a response, averaged over the batch,
    in nats; target 6, horizon 10000). `n_steps` is the number of samples (episodes) since the last update.
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        if init_coef <= 0:
            raise ValueError(f"adaptive KL init_coef must be > 0 (a multiplicative update never leaves 0), got {init_coef}")
        if target <= 0:
            raise ValueError(f"adaptive KL target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"adaptive KL horizon must be > 0, got {horizon}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """A NaN/inf KL is refused (ValueError): `min`/`max` would pass NaN through and the coefficient would stay NaN
        for good. The driver skips the controller on such steps (rl/run/fault.py)."""
        if not math.isfinite(current_kl):
            raise ValueError(f"adaptive KL update with a non-finite KL ({current_kl}); "
                             f"the coefficient stays {self.value}")
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        """The coefficient is training state: checkpoints must carry it for an exact resume."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = _checked_coef(state)
