"""Per-token log-probabilities of a causal LM's own samples, memory-aware.

Usage with a HF causal LM (position t of the logits predicts token t + 1):

    labels, label_mask = shift_for_causal_lm(input_ids, response_mask)
    logits = model(input_ids, attention_mask=attention_mask).logits[:, :-1]
    logprobs = token_logprobs(logits, labels, temperature=sampling_temperature)   # [B, T-1], aligned with label_mask
"""
from __future__ import annotations

import torch
from torch import Tensor


def shift_for_causal_lm(input_ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Align targets with the logits of a causal LM: returns (labels = input_ids[:, 1:], mask[:, 1:]).

    `mask` [B, T] marks trained tokens in input_ids positions (1 on response tokens); after the shift it marks the
    logits positions whose *next* token is trained, i.e. it lines up with `token_logprobs(logits[:, :-1], labels)`.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, T], got {tuple(input_ids.shape)}")
    if mask is not None and mask.shape != input_ids.shape:
        raise ValueError(f"mask must match input_ids {tuple(input_ids.shape)}, got {tuple(mask.shape)}")
    return input_ids[:, 1:], (None if mask is None else mask[:, 1:])


def token_logprobs(logits: Tensor, labels: Tensor, temperature: float = 1.0, chunk_rows: int = 1024) -> Tensor:
    """log softmax(logits / temperature)[label] for each position: [B, T, V], [B, T] -> [B, T] fp32.

    Computed as logit[label] - logsumexp(logits) in chunks of `chunk_rows` flattened positions, so no [B, T, V]
    log_softmax is ever materialised: the only full-size tensor is the logits themselves (what autograd keeps for the
    backward of logsumexp). Low-precision logits (bf16/fp16) are upcast to fp32 one chunk at a time, because
    logsumexp in bf16 loses the precision that importance ratios need; autograd then keeps those fp32 chunks (one copy
    of the logits in fp32, never two). The same holds with temperature != 1 (the scaled chunks are kept).
    `temperature` must match the sampler's when these logprobs are compared with vLLM's (PPO ratio, TIS): vLLM
    samples from softmax(logits / temperature).
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B, T, V = logits.shape
    rows = logits.reshape(B * T, V)
    targets = labels.reshape(B * T, 1).long()
    pieces = []
    for start in range(0, B * T, chunk_rows):
        chunk = rows[start : start + chunk_rows].float()
        if temperature != 1.0:
            chunk = chunk / temperature
        chosen = chunk.gather(dim=-1, index=targets[start : start + chunk_rows]).squeeze(-1)
        pieces.append(chosen - torch.logsumexp(chunk, dim=-1))
    if not pieces:
        return logits.new_zeros((B, T), dtype=torch.float32)
    return torch.cat(pieces).view(B, T)
