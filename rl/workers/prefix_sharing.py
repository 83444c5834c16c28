"""Prefix-shared forward for GRPO: the shared prompt prefix is computed once, every sample's suffix attends to its KV.

Implements the idea of "Prefix Grouper" (Liu et al. 2025, arXiv 2506.05433) with a HF causal LM and a `DynamicCache`
instead of a custom attention kernel: the samples of one GRPO group (and, in afrl, every sample of a step, because the
long system prompt is identical across requests) share a prefix. A plain forward recomputes that prefix once per
sample; here it is run once (batch 1), and one forward of the suffixes, laid end to end after it with a block mask
and explicit position ids, attends to its keys/values. Autograd flows through the cached keys and
values back into the prefix forward, so the gradients equal those of the plain forward (tests/workers/test_prefix_sharing.py
checks log-probs and gradients to 1e-5 in fp32).

Two levels of sharing:
  1. the prefix common to every row of the batch (system prompt + start of the user turn), run once;
  2. optionally, per contiguous group of `group_size` rows (one GRPO group = one request), the rest of the common
     prefix of that group (the request text + prefill), run once per group on top of level 1.

Across micro-batches (`SharedPrefix`, what the trainer uses): the prefix of a whole minibatch is run once with grad;
each micro-batch's suffixes attend to *detached leaf copies* of its keys/values, so their backward stops there and
accumulates dL/dKV in the leaves; after the last micro-batch, one backward of `surrogate_loss()` = sum <KV, dL/dKV>
pushes those gradients through the prefix graph. The prefix then costs one forward+backward per optimizer step
whatever the micro-batch size, and micro-batches can stay small (memory) without recomputing it.

The suffixes of a forward run as one sequence after the prefix, with a block mask (`grouped_suffix_mask`), so the
prefix keys/values enter attention once per forward, not once per row.

Left out / limits:
  - HF's DynamicCache concatenates the cached prefix with the suffixes' keys inside attention: one copy of the prefix
    KV per layer and forward ([1, H_kv, P + B*S, D]); the mask is [B*S, P + B*S] booleans.
  - With gradient checkpointing (non-reentrant, transformers' default) the prefix and suffix forwards are both
    checkpointed layer by layer; the prefix's keys/values reach the suffix's layers through a cache that survives the
    layers' replay in the backward (rl/workers/prefix_cache.py), so the gradients are unchanged.
  - Rows must be right-padded (what rl/batch.collate produces); positions are 0..L-1 as in the plain forward.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rl.algo.logprobs import token_logprobs


def common_prefix_length(input_ids: Tensor, limit: int) -> int:
    """Length of the longest prefix shared by every row of `input_ids` [B, L], at most `limit`."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got {tuple(input_ids.shape)}")
    limit = max(0, min(limit, input_ids.shape[1]))
    if input_ids.shape[0] <= 1:
        return limit
    differs = (input_ids[:, :limit] != input_ids[:1, :limit]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else limit


def _unwrapped(model):
    """The HF module under a DeepSpeed engine (or the model itself)."""
    return getattr(model, "module", model)


def _check_model(model) -> None:
    from rl.workers.prefix_cache import check_checkpointing

    module = _unwrapped(model)
    if module.training:
        check_checkpointing(module)


def _forward_on_prefix(model, past: list[tuple[Tensor, Tensor]] | None, keep: bool, **inputs):
    """model(**inputs) attending to `past` first; returns (output, the cache: with `keep`, past + this forward's
    keys/values). Works with gradient-checkpointed layers (rl/workers/prefix_cache.py)."""
    from rl.workers.prefix_cache import PrefixCache, num_decoder_layers, prefix_cache_kept

    cache = PrefixCache(past, num_decoder_layers(_unwrapped(model)), keep)
    with prefix_cache_kept(_unwrapped(model)):
        # use_cache=False: the cache is ours, HF need not make one (and checkpointed layers would warn about it).
        out = model(**inputs, past_key_values=cache, use_cache=False)
    return out, cache


def _extend_prefix(model, past: list[tuple[Tensor, Tensor]] | None, ids: Tensor, offset: int):
    """Run `ids` [1, n] (positions offset..offset+n-1) on top of `past`; returns the keys/values of the whole prefix."""
    if ids.shape[1] == 0:
        return past
    positions = torch.arange(offset, offset + ids.shape[1], device=ids.device).unsqueeze(0)
    _, cache = _forward_on_prefix(model, past, True, input_ids=ids, position_ids=positions, logits_to_keep=1)
    return cache.key_values()


def _suffix_logits(model, past, input_ids: Tensor, attention_mask: Tensor, prefix_len: int, keep: int) -> Tensor:
    """Logits of the last `keep` positions of rows [B, L] whose first `prefix_len` tokens are already in `past`.

    The rows' suffixes run as one sequence [suffix_1 | ... | suffix_B] on top of the prefix (Prefix Grouper's layout):
    each suffix token attends to the whole prefix and causally to its own row, so the prefix keys/values are used once
    ([1, H_kv, P, D]) instead of being expanded and back-propagated per row.
    Pad tokens of right-padded rows stay in their row's block; nothing real attends to them."""
    batch, length = input_ids.shape
    if not past:
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
    suffix = length - prefix_len
    device = input_ids.device
    positions = torch.arange(prefix_len, length, device=device).repeat(batch).unsqueeze(0)
    wanted = (torch.arange(batch, device=device)[:, None] * suffix
              + torch.arange(suffix - keep, suffix, device=device)[None, :]).reshape(-1)
    mask = _as_attention_mask(model, grouped_suffix_mask(batch, suffix, prefix_len, device), past[0][0].dtype)
    out, cache = _forward_on_prefix(model, past, False, input_ids=input_ids[:, prefix_len:].reshape(1, batch * suffix),
                                    position_ids=positions, attention_mask=mask, logits_to_keep=wanted)
    cache.check_read()
    return out.logits.view(batch, keep, -1)


def _as_attention_mask(model, allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """HF takes a 4D mask as given: booleans for SDPA, an additive float mask for eager attention."""
    implementation = _unwrapped(model).config._attn_implementation
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed,
                                                                                          torch.finfo(dtype).min)
    raise ValueError(f"prefix sharing needs attn_implementation sdpa or eager (a 4D block mask), got {implementation!r}: "
                     "load the model with attn_implementation='sdpa' or set trainer.prefix_sharing=false")


def grouped_suffix_mask(batch: int, suffix: int, prefix_len: int, device=None) -> Tensor:
    """[1, 1, B*S, P + B*S] boolean mask (True = attend) of B suffixes of S tokens laid end to end after a shared
    prefix of P tokens: every query sees the prefix and the tokens of its own suffix up to itself."""
    row = torch.arange(batch, device=device).repeat_interleave(suffix)
    col = torch.arange(suffix, device=device).repeat(batch)
    own_row_causal = (row[:, None] == row[None, :]) & (col[None, :] <= col[:, None])
    sees_prefix = torch.ones(batch * suffix, prefix_len, dtype=torch.bool, device=device)
    return torch.cat([sees_prefix, own_row_causal], dim=1)[None, None]


def shared_prefix_limit(attention_mask: Tensor, start: int) -> int:
    """How long a prefix may be: it stops before position start-1 (whose logit predicts token `start`) and inside
    every row's real tokens."""
    return min(start - 1, int(attention_mask.sum(dim=1).min()))


def prefix_shared_token_logprobs(
    model, input_ids: Tensor, attention_mask: Tensor, start: int, temperature: float = 1.0,
    group_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Log-probs of tokens start..L-1 ([B, L-start]) and the logits predicting them ([B, L-start, V]).

    Same contract as `PolicyTrainer._token_logprobs` (token coordinates: column j is log p(token start+j | < start+j)),
    computed with the shared prefix run once. `start` >= 1 is the first token whose log-prob is needed.
    `group_size`: rows come in contiguous groups of this size (GRPO, prompt-major) that share a longer prefix each;
    None = only the prefix common to the whole batch is shared.
    """
    _check_inputs(input_ids, attention_mask, start)
    batch = input_ids.shape[0]
    if group_size is not None and (group_size < 1 or batch % group_size):
        raise ValueError(f"group_size must divide the batch of {batch} rows, got {group_size}")
    _check_model(model)
    shared = shared_prefix_length(input_ids, attention_mask, start)
    past = _extend_prefix(model, None, input_ids[:1, :shared], 0)
    return _grouped_suffix_logprobs(model, past, shared, input_ids, attention_mask, start, temperature, group_size)


def _check_inputs(input_ids: Tensor, attention_mask: Tensor, start: int) -> None:
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both be [B, L]")
    length = input_ids.shape[1]
    if not 1 <= start < length:
        raise ValueError(f"start must be in [1, {length - 1}] for sequences of length {length}, got {start}")


def _grouped_suffix_logprobs(model, past, shared: int, input_ids: Tensor, attention_mask: Tensor, start: int,
                             temperature: float, group_size: int | None) -> tuple[Tensor, Tensor]:
    """Suffix forwards on top of `past` (the first `shared` tokens), extended per group when `group_size` is given."""
    batch, length = input_ids.shape
    limit = shared_prefix_limit(attention_mask, start)
    keep = length - start + 1
    pieces = []
    for begin in range(0, batch, group_size or batch):
        rows = slice(begin, begin + (group_size or batch))
        group_len = common_prefix_length(input_ids[rows], limit) if group_size else shared
        group_past = _extend_prefix(model, past, input_ids[begin : begin + 1, shared:group_len], shared)
        pieces.append(_suffix_logits(model, group_past, input_ids[rows], attention_mask[rows], group_len, keep))
    logits = torch.cat(pieces)[:, :-1]
    return token_logprobs(logits, input_ids[:, start:], temperature=temperature), logits


def shared_prefix_length(input_ids: Tensor, attention_mask: Tensor, start: int) -> int:
    """Length of the prefix every row shares and that `SharedPrefix` may run once (see `shared_prefix_limit`)."""
    return common_prefix_length(input_ids, shared_prefix_limit(attention_mask, start))


class SharedPrefix:
    """The prefix common to the rows of a minibatch, run once; micro-batches of those rows reuse it (`logprobs`).

    With grad enabled, micro-batches see detached leaf copies of the prefix keys/values: their backward accumulates
    dL/dKV there, and `surrogate_loss()` (backpropagated once, after the last micro-batch) carries it through the
    prefix forward. Under no_grad it is simply the prefix computed once for many micro-batches.
    """

    def __init__(self, model, input_ids: Tensor, attention_mask: Tensor, start: int, max_length: int | None = None):
        _check_inputs(input_ids, attention_mask, start)
        _check_model(model)
        length = shared_prefix_length(input_ids, attention_mask, start)
        self.length = length if max_length is None else min(length, max_length)
        self.tokens = input_ids[0, : self.length]
        self._kv = _extend_prefix(model, None, input_ids[:1, : self.length], 0) or []
        self.trainable = torch.is_grad_enabled() and any(k.requires_grad for k, _ in self._kv)
        self.leaves = [(k.detach().requires_grad_(), v.detach().requires_grad_()) for k, v in self._kv] \
            if self.trainable else self._kv

    def logprobs(self, model, input_ids: Tensor, attention_mask: Tensor, start: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """`prefix_shared_token_logprobs` of rows that begin with this prefix, reusing it."""
        _check_inputs(input_ids, attention_mask, start)
        if self.length > shared_prefix_limit(attention_mask, start) or \
                not torch.equal(input_ids[:, : self.length], self.tokens.expand(input_ids.shape[0], -1)):
            raise ValueError(f"these rows do not all start with the shared prefix of {self.length} tokens "
                             f"(or it reaches past start - 1 = {start - 1})")
        return _grouped_suffix_logprobs(model, self.leaves or None, self.length, input_ids, attention_mask, start,
                                        temperature, None)

    def surrogate_loss(self) -> Tensor | None:
        """sum <KV, dL/dKV> over the prefix: its gradient w.r.t. the parameters is the prefix's share of dL/dθ.
        None when nothing flowed into the prefix (no prefix, or no micro-batch backward yet)."""
        if not self.trainable:
            return None
        pairs = [(kv, leaf) for kv_pair, leaf_pair in zip(self._kv, self.leaves) for kv, leaf in zip(kv_pair, leaf_pair)]
        terms = [(kv * leaf.grad).sum() for kv, leaf in pairs if leaf.grad is not None]
        return torch.stack(terms).sum() if terms else None
