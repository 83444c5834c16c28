"""The compute floor of one GRPO step and the machine's measured matmul rate (pure arithmetic + one timing loop).

Floor (issue 8's definition): FLOPs = 6 x params x (unique prompt tokens + generated tokens)  [update: forward+backward]
                                    + 2 x params x unique prompt tokens                       [rollout prefill]
divided by the measured dense matmul rate. "Unique prompt tokens" counts a token shared by several prompts once (the
nodes of the prompts' prefix tree): with prefix caching and a prefix-shared update the shared system prompt is paid
once per step. Left out on purpose, as in the issue: attention FLOPs and the decode forward of generated tokens, so the
floor is a lower bound, not a prediction.

The attention the issue's floor leaves out is not small on a long prompt: a token at position p attends to p + 1 keys,
4 x layers x heads x head_dim FLOPs per query-key pair (QK^T and PV). On `paper` (5.6k tokens, SmolLM2-135M: 30
layers x 9 heads x 64) that is 1.3 TFLOP per forward of a step's unique tokens, against 1.7 TFLOP for their
parameter matmuls. `attention_floor_flops` adds it (forward + backward = 3 forwards in the update, as 6N counts
the parameters; one forward of the prompt at prefill) for a second floor, printed beside the issue's.

A third floor prices that attention at the rate the attention kernel itself reaches here (`measure_attention_flops`,
causal SDPA forward + backward at the workload's prompt length) instead of the dense matmul rate: what the step
would take if every matmul ran at the dense rate and attention at its kernel's.
"""
from __future__ import annotations

import time
from typing import Sequence


def _new_nodes(sequences: Sequence[Sequence[int]]):
    """Each sequence of the prefix tree of `sequences` in sorted order, with how many of its leading tokens are nodes
    already counted (shared with the previous one)."""
    previous: tuple = ()
    for seq in sorted(tuple(s) for s in sequences):
        shared = 0
        for a, b in zip(previous, seq):
            if a != b:
                break
            shared += 1
        yield seq, shared
        previous = seq


def unique_prefix_tokens(sequences: Sequence[Sequence[int]]) -> int:
    """Number of nodes in the prefix tree of `sequences` (identical prefixes counted once)."""
    return sum(len(seq) - shared for seq, shared in _new_nodes(sequences))


def prefix_tree_attention_pairs(sequences: Sequence[Sequence[int]]) -> int:
    """Causal query-key pairs of one forward over the prefix tree of `sequences`: every node (a token at position p,
    shared prefixes counted once) attends to p + 1 keys."""
    return sum(sum(range(shared + 1, len(seq) + 1)) for seq, shared in _new_nodes(sequences))


def prompt_shape(prompts: Sequence[Sequence[int]]) -> dict:
    """What a step record keeps of its distinct prompts for the floors: unique tokens, the prefix tree's attention
    pairs and each prompt's length."""
    return {"unique_prompt_tokens": unique_prefix_tokens(prompts),
            "prompt_attention_pairs": prefix_tree_attention_pairs(prompts),
            "prompt_lengths": [len(p) for p in prompts]}


def generated_attention_pairs(prompt_lengths: Sequence[int], samples: int, mean_generated: float) -> float:
    """Query-key pairs of `samples` completions of `mean_generated` tokens each, spread evenly over prompts of these
    lengths: generated token j of a completion after a prompt of L tokens attends to L + j + 1 keys."""
    if not prompt_lengths or samples < 0 or mean_generated < 0:
        raise ValueError(f"need prompts, samples >= 0 and mean_generated >= 0: prompts={len(prompt_lengths)}, "
                         f"samples={samples}, mean_generated={mean_generated}")
    per_prompt = samples / len(prompt_lengths)
    g = mean_generated
    return per_prompt * sum(g * length + g * (g + 1) / 2 for length in prompt_lengths)


def attention_floor_flops(flops_per_pair: float, prompt_pairs: float, generated_pairs: float) -> float:
    """Attention FLOPs of a step: the update's forward + backward (3 forwards) over prompt and completions, plus one
    forward of the prompt at prefill. `flops_per_pair` = 4 x layers x heads x head_dim (`attention_flops_per_pair`)."""
    if min(flops_per_pair, prompt_pairs, generated_pairs) < 0:
        raise ValueError(f"negative count: flops_per_pair={flops_per_pair}, prompt_pairs={prompt_pairs}, "
                         f"generated_pairs={generated_pairs}")
    return flops_per_pair * (3.0 * (prompt_pairs + generated_pairs) + prompt_pairs)


def attention_heads(config) -> tuple[int, int]:
    """(query heads, head_dim) of an HF decoder config."""
    return config.num_attention_heads, getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def attention_flops_per_pair(config) -> int:
    """4 x layers x query heads x head_dim of an HF decoder config: QK^T and PV, 2 FLOPs per multiply-add each."""
    heads, head_dim = attention_heads(config)
    return 4 * config.num_hidden_layers * heads * head_dim


def floor_flops(n_params: int, unique_prompt_tokens: int, generated_tokens: int) -> float:
    if min(n_params, unique_prompt_tokens, generated_tokens) < 0:
        raise ValueError(f"negative count: params={n_params}, prompt tokens={unique_prompt_tokens}, "
                         f"generated tokens={generated_tokens}")
    return 6.0 * n_params * (unique_prompt_tokens + generated_tokens) + 2.0 * n_params * unique_prompt_tokens


def floor_seconds(n_params: int, unique_prompt_tokens: int, generated_tokens: int, flops_per_s: float) -> float:
    if flops_per_s <= 0:
        raise ValueError(f"flops_per_s must be > 0, got {flops_per_s}")
    return floor_flops(n_params, unique_prompt_tokens, generated_tokens) / flops_per_s


def _synchronizer(device: str):
    """A call that waits for the device's queued work (GPU kernels are asynchronous; CPU work is not)."""
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def measure_attention_flops(length: int, heads: int, head_dim: int, repeats: int = 2, dtype: str = "float32",
                            device: str = "cpu") -> float:
    """The rate attention runs at here, in the floor's FLOPs per second: causal SDPA forward + backward on one layer
    of a `length`-token sequence ([1, heads, length, head_dim]), counted as 3 forwards of 4 x heads x head_dim per
    query-key pair (how `attention_floor_flops` counts it), best of `repeats` after a warm-up. On CPU torch's flash
    kernel multiplies [block x head_dim] tiles, a GEMM with an inner dimension of 64 that runs well below the dense
    [1024 x 1024] rate of `measure_matmul_flops`."""
    import torch

    if min(length, heads, head_dim, repeats) < 1:
        raise ValueError(f"length, heads, head_dim and repeats must be >= 1, got {length}, {heads}, {head_dim}, {repeats}")
    shape = (1, heads, length, head_dim)
    q, k, v = (torch.randn(shape, dtype=getattr(torch, dtype), device=device, requires_grad=True) for _ in range(3))
    sync = _synchronizer(device)
    best = float("inf")
    for attempt in range(repeats + 1):  # the first is a warm-up
        sync()
        start = time.perf_counter()
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(torch.ones_like(out))
        sync()
        if attempt:
            best = min(best, time.perf_counter() - start)
    pairs = length * (length + 1) / 2
    return 3 * 4 * heads * head_dim * pairs / best


def measure_matmul_flops(seconds: float = 2.0, size: int = 1024, dtype: str = "float32", device: str = "cpu") -> float:
    """Dense matmul rate (FLOP/s) of this process's torch threads: repeat [size x size] @ [size x size] for `seconds`."""
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.randn(size, size, dtype=torch_dtype, device=device)
    b = torch.randn(size, size, dtype=torch_dtype, device=device)
    sync = _synchronizer(device)
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
