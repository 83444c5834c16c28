"""The compute floor of one GRPO step and the machine's measured matmul rate (pure arithmetic + one timing loop).

Floor (issue 8's definition): FLOPs = 6 x params x (unique prompt tokens + generated tokens)  [update: forward+backward]
                                    + 2 x params x unique prompt tokens                       [rollout prefill]
divided by the measured dense matmul rate. "Unique prompt tokens" counts a token shared by several prompts once (the
nodes of the prompts' prefix tree): with prefix caching and a prefix-shared update the shared system prompt is paid
once per step. Left out on purpose, as in the issue: attention FLOPs and the decode forward of generated tokens, so the
floor is a lower bound, not a prediction.
"""
from __future__ import annotations

import time
from typing import Sequence


def unique_prefix_tokens(sequences: Sequence[Sequence[int]]) -> int:
    """Number of nodes in the prefix tree of `sequences` (identical prefixes counted once)."""
    ordered = sorted(tuple(s) for s in sequences)
    total, previous = 0, ()
    for seq in ordered:
        shared = 0
        for a, b in zip(previous, seq):
            if a != b:
                break
            shared += 1
        total += len(seq) - shared
        previous = seq
    return total


def floor_flops(n_params: int, unique_prompt_tokens: int, generated_tokens: int) -> float:
    if min(n_params, unique_prompt_tokens, generated_tokens) < 0:
        raise ValueError(f"negative count: params={n_params}, prompt tokens={unique_prompt_tokens}, "
                         f"generated tokens={generated_tokens}")
    return 6.0 * n_params * (unique_prompt_tokens + generated_tokens) + 2.0 * n_params * unique_prompt_tokens


def floor_seconds(n_params: int, unique_prompt_tokens: int, generated_tokens: int, flops_per_s: float) -> float:
    if flops_per_s <= 0:
        raise ValueError(f"flops_per_s must be > 0, got {flops_per_s}")
    return floor_flops(n_params, unique_prompt_tokens, generated_tokens) / flops_per_s


def measure_matmul_flops(seconds: float = 2.0, size: int = 1024, dtype: str = "float32", device: str = "cpu") -> float:
    """Dense matmul rate (FLOP/s) of this process's torch threads: repeat [size x size] @ [size x size] for `seconds`."""
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.randn(size, size, dtype=torch_dtype, device=device)
    b = torch.randn(size, size, dtype=torch_dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up (thread pool, caches)
        a @ b
    sync()
    per_sync = 20 if device == "cuda" else 1  # GPU kernels are asynchronous: time whole batches of them
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(per_sync):
            a @ b
        sync()
        iterations += per_sync
    return 2.0 * size**3 * iterations / (time.perf_counter() - start)
