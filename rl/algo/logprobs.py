"""Per-token log-probabilities of a causal LM's own samples, memory-aware.

Usage with a HF causal LM (position t of the logits predicts token t + 1):

    logits = model(input_ids, attention_mask=attention_mask).logits[:, :-1]
    logprobs = token_logprobs(logits, input_ids[:, 1:], temperature=sampling_temperature)   # [B, T-1]
"""
from __future__ import annotations

import torch
from torch import Tensor


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
