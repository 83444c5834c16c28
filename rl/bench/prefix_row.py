"""The prefix-sharing row: plain vs prefix-shared forward+backward on afrl's last step's real batch, in this process.

Both compute the log-probs of the generated tokens and backpropagate their masked sum (the shape of the GRPO loss's
graph), one GRPO group (group_size rows, one shared prompt) per forward, as a prefix-sharing trainer with
micro_batch_size = group_size would: the whole batch at once needs ~2x a trainer's activation memory and swapped the
24 GiB machine. The row reports the summed seconds (median over reps), the speedup and the largest log-prob difference.
"""
from __future__ import annotations

import statistics
import time


def measure_prefix_sharing(model_path: str, samples, group_size: int, dtype: str = "float32", device: str = "cpu",
                           reps: int = 1, pad_token_id: int = 0) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rl.algo.batch import collate

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device).train()
    chunks = [collate(samples[i : i + group_size], [0.0] * group_size, pad_token_id).trimmed()
              for i in range(0, len(samples), group_size)]
    results = [_measure_chunk(model, chunk, device, reps) for chunk in chunks]
    plain_s, shared_s = sum(r["plain_s"] for r in results), sum(r["shared_s"] for r in results)
    return {
        "sequences": len(samples), "tokens": sum(r["tokens"] for r in results),
        "shared_prefix_tokens": min(r["shared_prefix_tokens"] for r in results), "rows_per_forward": group_size,
        "plain_s": plain_s, "shared_s": shared_s, "speedup": plain_s / shared_s,
        "max_abs_logprob_diff": max(r["max_abs_logprob_diff"] for r in results),
    }


def _measure_chunk(model, batch, device: str, reps: int) -> dict:
    import torch

    from rl.algo.logprobs import token_logprobs
    from rl.workers.prefix_sharing import common_prefix_length, prefix_shared_token_logprobs

    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    trained = batch.loss_mask.bool().any(dim=0).nonzero()
    start = max(int(trained[0]) if len(trained) else ids.shape[1] - 1, 1)
    loss_mask = batch.loss_mask[:, start:].to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def plain():
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=ids.shape[1] - start + 1).logits[:, :-1]
        return token_logprobs(logits, ids[:, start:])

    def shared():
        return prefix_shared_token_logprobs(model, ids, mask, start)[0]

    def timed(fn):
        model.zero_grad(set_to_none=True)
        sync()
        begin = time.perf_counter()
        logprobs = fn()
        (logprobs * loss_mask).sum().backward()
        sync()
        return time.perf_counter() - begin, logprobs.detach()

    plain_times, shared_times = [], []
    for _ in range(reps):  # alternate so that load changes hit both alike
        t, lp_plain = timed(plain)
        plain_times.append(t)
        t, lp_shared = timed(shared)
        shared_times.append(t)
    plain_s, shared_s = statistics.median(plain_times), statistics.median(shared_times)
    limit = min(start - 1, int(mask.sum(dim=1).min()))
    return {
        "tokens": int(mask.sum()), "shared_prefix_tokens": common_prefix_length(ids, limit),
        "plain_s": plain_s, "shared_s": shared_s, "speedup": plain_s / shared_s,
        "max_abs_logprob_diff": float(((lp_plain - lp_shared) * loss_mask).abs().max()),
    }
