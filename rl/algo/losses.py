"""Policy and value losses for PPO / GRPO and their variants, as pure torch functions.

- `clipped_policy_loss`: PPO clipped surrogate (Schulman et al. 2017), as used by GRPO (Shao et al. 2024); asymmetric
  clip bounds give DAPO clip-higher (Yu et al. 2025); optional per-token truncated importance weights for the
  vLLM-vs-trainer mismatch (Yao et al. 2025, see rl/algo/importance.py).
- `clipped_value_loss`: PPO value loss with value clipping (as in OpenAI baselines / Ziegler et al. 2019).
- `aggregate_token_loss`: how per-token losses become one number; the choice is what separates GRPO, DAPO and Dr. GRPO.
- `entropy_from_logits`: per-token entropy of the policy, for logging and an optional bonus.

Shapes: B sequences, T tokens, V vocabulary; `mask` [B, T] marks trained tokens (1/True). Masked-out entries never
reach a result, even when they hold inf/nan (they are selected away with `where`, not multiplied by 0).
"""
from __future__ import annotations

import torch
from torch import Tensor

AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def check_same_shape(require_2d: bool = False, **tensors: Tensor) -> None:
    """ValueError naming the tensors unless they all have one shape (two-dimensional, [B, T], with `require_2d`)."""
    shapes = [tuple(tensor.shape) for tensor in tensors.values()]
    if len(set(shapes)) > 1 or (require_2d and len(shapes[0]) != 2):
        raise ValueError(f"{', '.join(tensors)} must share one [B, T] shape, got {', '.join(map(str, shapes))}")


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of x over entries where mask is true (all entries if dim is None, else along dim)."""
    selected = torch.where(mask.bool(), x, torch.zeros_like(x))
    return selected.sum() if dim is None else selected.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over entries where mask is true; 0 where nothing is selected (no nan, no nan gradient)."""
    total = masked_sum(x, mask, dim)
    count = masked_sum(torch.ones_like(x), mask, dim)
    # Divide by 1 where the count is 0: total is 0 there, so the mean is 0 and the gradient stays finite.
    return total / torch.where(count > 0, count, torch.ones_like(count))


def aggregate_token_loss(
    loss: Tensor, mask: Tensor, mode: str, norm_length: int | None = None
) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    - "token_mean": mean over all trained tokens of the batch (DAPO, Yu et al. 2025, "token-level policy gradient
      loss"): every token weighs the same, so long responses are not under-weighted.
    - "seq_mean_token_mean": mean over each sequence's trained tokens, then mean over the sequences that have at least
      one trained token (original GRPO, Shao et al. 2024, eq. 3: 1/G sum_i 1/|o_i| sum_t). Introduces a length bias.
    - "seq_mean_token_sum_norm": sum over each sequence's trained tokens divided by a constant `norm_length`
      (the generation budget, max_new_tokens), then mean over all B sequences (Dr. GRPO, Liu et al. 2025). With
      `norm_length=None` the constant is T, the padded length of this batch (only constant if T is fixed).
    Unknown mode -> ValueError naming it.
    """
    check_same_shape(require_2d=True, loss=loss, mask=mask)
    if mode == "token_mean":
        return masked_mean(loss, mask)
    if mode == "seq_mean_token_mean":
        per_sequence = masked_mean(loss, mask, dim=1)
        has_tokens = mask.bool().any(dim=1)
        return masked_mean(per_sequence, has_tokens)
    if mode == "seq_mean_token_sum_norm":
        length = loss.shape[1] if norm_length is None else norm_length
        if length <= 0:
            raise ValueError(f"norm_length must be > 0, got {norm_length}")
        return (masked_sum(loss, mask, dim=1) / length).mean()
    raise ValueError(f"unknown loss aggregation mode {mode!r}; expected one of {AGGREGATIONS}")


def _per_token_advantages(advantages: Tensor, shape: torch.Size) -> Tensor:
    """Broadcast sequence-level advantages [B] to [B, T]; pass token-level [B, T] through."""
    if advantages.dim() == 1 and advantages.shape[0] == shape[0]:
        return advantages[:, None].expand(shape)
    if advantages.shape == shape:
        return advantages
    raise ValueError(f"advantages must be [B] or [B, T] = {tuple(shape)}, got {tuple(advantages.shape)}")


def clipped_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float,
    clip_high: float,
    aggregation: str,
    is_weights: Tensor | None = None,
    norm_length: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate loss, per token, aggregated.

    loss_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - clip_low, 1 + clip_high)) with r_t = exp(logprobs - old_logprobs)
    (Schulman et al. 2017, eq. 7; used per token by GRPO, Shao et al. 2024). `clip_high > clip_low` is DAPO's
    clip-higher (Yu et al. 2025, e.g. 0.2 / 0.28). `is_weights` [B, T] multiplies each token's loss by a detached
    truncated importance weight (Yao et al. 2025) correcting for old_logprobs coming from the trainer while the tokens
    were sampled by vLLM. `advantages` is [B] (one per sequence, GRPO/RLOO) or [B, T] (GAE).
    `aggregation` is a mode of `aggregate_token_loss` (`norm_length` goes with "seq_mean_token_sum_norm").

    Stats (python floats, over trained tokens): clip_frac = fraction of tokens where the clipped term is the active
    one (no gradient); ratio_mean; approx_kl = k3 estimate of KL(old || new) with samples from old,
    mean of (r - 1) - log r (Schulman, "Approximating KL divergence").
    Left out: dual-clip PPO (Ye et al. 2020), the KL and entropy terms (added by the caller, see rl/algo/kl.py).
    """
    check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
    if clip_low <= 0 or clip_low >= 1 or clip_high <= 0:
        raise ValueError(f"need 0 < clip_low < 1 and clip_high > 0, got clip_low={clip_low}, clip_high={clip_high}")
    trained = mask.bool()
    token_advantages = _per_token_advantages(advantages, logprobs.shape).to(logprobs.dtype)
    # Zero the log-ratio on untrained positions so exp() of padding garbage cannot make inf/nan gradients.
    log_ratio = torch.where(trained, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)
    unclipped = -token_advantages * ratio
    clipped = -token_advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if is_weights is not None:
        if is_weights.shape != logprobs.shape:
            raise ValueError(f"is_weights must be [B, T] = {tuple(logprobs.shape)}, got {tuple(is_weights.shape)}")
        per_token = per_token * is_weights.detach()
    loss = aggregate_token_loss(per_token, mask, aggregation, norm_length)

    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean((clipped > unclipped).float(), trained).item(),
            "ratio_mean": masked_mean(ratio, trained).item(),
            "approx_kl": masked_mean(ratio - 1.0 - log_ratio, trained).item(),
        }
    return loss, stats


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float,
    aggregation: str,
    norm_length: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO value loss with value clipping: 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, +-clip).

    As in OpenAI baselines ppo2 and lm-human-prefs (Ziegler et al. 2019); `returns` come from `gae`. The critic's
    update is kept close to the values the advantages were computed with.
    Stats: vf_clip_frac (fraction of tokens where the clipped error is the larger one), value_mean, return_mean.
    Left out: Huber loss variants, clipping turned off (pass a large `clip`).
    """
    check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    if clip <= 0:
        raise ValueError(f"value clip must be > 0, got {clip}")
    trained = mask.bool()
    old_values, returns = old_values.detach(), returns.detach()
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    per_token = 0.5 * torch.maximum(unclipped_error, clipped_error)
    loss = aggregate_token_loss(per_token, mask, aggregation, norm_length)
    with torch.no_grad():
        stats = {
            "vf_clip_frac": masked_mean((clipped_error > unclipped_error).float(), trained).item(),
            "value_mean": masked_mean(values, trained).item(),
            "return_mean": masked_mean(returns, trained).item(),
        }
    return loss, stats


def entropy_from_logits(logits: Tensor, chunk_rows: int = 1024) -> Tensor:
    """Per-token entropy H = logsumexp(z) - sum softmax(z) * z of the distribution given by logits [B, T, V] -> [B, T].

    Computed in fp32, in chunks of `chunk_rows` flattened positions so the [B*T, V] softmax temporary stays small in
    the forward pass (autograd still keeps one chunk's softmax per chunk when a gradient is needed). Temperature is the
    caller's: pass logits / temperature to get the sampling distribution's entropy.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got {tuple(logits.shape)}")
    B, T, V = logits.shape
    rows = logits.reshape(B * T, V)
    pieces = []
    for start in range(0, B * T, chunk_rows):
        chunk = rows[start : start + chunk_rows].float()
        probs = torch.softmax(chunk, dim=-1)
        pieces.append(torch.logsumexp(chunk, dim=-1) - (probs * chunk).sum(dim=-1))
    if not pieces:
        return logits.new_zeros((B, T), dtype=torch.float32)
    return torch.cat(pieces).view(B, T)
