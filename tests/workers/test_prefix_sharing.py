"""The prefix-shared forward (rl/workers/prefix_sharing.py) gives the plain forward's log-probs and gradients (fp32,
1e-5)."""
from __future__ import annotations

import pytest
import torch

from rl.algo.logprobs import token_logprobs
from rl.workers.prefix_sharing import common_prefix_length, prefix_shared_token_logprobs

VOCAB = 101


def tiny_llama(attn: str = "sdpa", seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, attn_implementation=attn,
    )
    return LlamaForCausalLM(config).float().train()


def right_padded(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def plain_logprobs(model, ids, mask, start):
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=ids.shape[1] - start + 1).logits[:, :-1]
    return token_logprobs(logits, ids[:, start:])


def logprobs_and_grads(model, fn, ids, mask, start, weights):
    """Log-probs of the real tokens, and d(sum of weighted log-probs)/d(params) (a stand-in for the GRPO loss)."""
    model.zero_grad(set_to_none=True)
    logprobs = fn(model, ids, mask, start)
    real = mask[:, start:].float()
    (logprobs * real * weights).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return (logprobs * real).detach(), grads


def assert_same(model, ids, mask, start, group_size=None):
    weights = torch.randn(ids.shape[0], ids.shape[1] - start)
    shared = lambda m, i, a, s: prefix_shared_token_logprobs(m, i, a, s, group_size=group_size)[0]  # noqa: E731
    lp_plain, g_plain = logprobs_and_grads(model, plain_logprobs, ids, mask, start, weights)
    lp_shared, g_shared = logprobs_and_grads(model, shared, ids, mask, start, weights)
    torch.testing.assert_close(lp_shared, lp_plain, atol=1e-5, rtol=0)
    for name in g_plain:
        torch.testing.assert_close(g_shared[name], g_plain[name], atol=1e-5, rtol=0, msg=f"gradient of {name}")


def random_tokens(n, generator):
    return torch.randint(3, VOCAB, (n,), generator=generator).tolist()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_one_group_same_length(attn):
    g = torch.Generator().manual_seed(1)
    prefix = random_tokens(40, g)
    ids, mask = right_padded([prefix + random_tokens(12, g) for _ in range(4)])
    assert_same(tiny_llama(attn), ids, mask, start=40)


def test_one_group_different_lengths_right_padded():
    g = torch.Generator().manual_seed(2)
    prefix = random_tokens(33, g)
    ids, mask = right_padded([prefix + random_tokens(n, g) for n in (3, 17, 9, 1)])
    assert_same(tiny_llama(), ids, mask, start=33)


def test_two_groups_with_different_prefixes():
    g = torch.Generator().manual_seed(3)
    system = random_tokens(30, g)
    requests = [random_tokens(7, g), random_tokens(11, g)]  # same system prompt, a different request per group
    rows = [system + request + random_tokens(n, g) for request in requests for n in (5, 13)]
    ids, mask = right_padded(rows)
    start = 30 + 7  # the first generated token of the shorter prompt; longer prompts train a few prompt tokens too
    for group_size in (None, 2):
        assert_same(tiny_llama(), ids, mask, start=start, group_size=group_size)


def test_groups_with_nothing_in_common():
    g = torch.Generator().manual_seed(4)
    rows = [p + random_tokens(n, g) for p in (random_tokens(20, g), random_tokens(25, g)) for n in (4, 8)]
    rows[2][0] = rows[0][0] + 1 if rows[0][0] + 1 < VOCAB else 3  # make sure the batch-wide common prefix is empty
    ids, mask = right_padded(rows)
    assert common_prefix_length(ids, 100) == 0
    assert_same(tiny_llama(), ids, mask, start=20, group_size=2)


def test_no_grad_path_matches():
    g = torch.Generator().manual_seed(5)
    prefix = random_tokens(25, g)
    ids, mask = right_padded([prefix + random_tokens(n, g) for n in (6, 2, 10)])
    model = tiny_llama().eval()
    with torch.no_grad():
        shared, logits = prefix_shared_token_logprobs(model, ids, mask, start=25)
        plain = plain_logprobs(model, ids, mask, 25)
    real = mask[:, 25:].bool()
    torch.testing.assert_close(shared[real], plain[real], atol=1e-5, rtol=0)
    assert logits.shape == (3, ids.shape[1] - 25, VOCAB)


def test_common_prefix_length():
    ids = torch.tensor([[1, 2, 3, 4], [1, 2, 9, 4], [1, 2, 3, 5]])
    assert common_prefix_length(ids, 10) == 2
    assert common_prefix_length(ids, 1) == 1
    assert common_prefix_length(ids[:1], 3) == 3


def test_bad_input_is_a_clear_error():
    model = tiny_llama()
    ids, mask = right_padded([[5, 6, 7, 8], [5, 6, 7, 9]])
    with pytest.raises(ValueError, match="start"):
        prefix_shared_token_logprobs(model, ids, mask, start=0)
    with pytest.raises(ValueError, match="group_size"):
        prefix_shared_token_logprobs(model, ids, mask, start=2, group_size=3)
    # Reentrant checkpointing backpropagates only into a layer's positional inputs: the prefix's gradient would be lost.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(ValueError, match="non-reentrant checkpointing.*use_reentrant"):
        prefix_shared_token_logprobs(model, ids, mask, start=2)


def test_prefix_runs_once_per_level():
    """The forwards actually share: batch 1 over the common prefix, batch 1 per group extension, then the group's
    suffixes laid end to end in one sequence."""
    g = torch.Generator().manual_seed(6)
    system, requests = random_tokens(30, g), [random_tokens(5, g), random_tokens(6, g)]
    rows = [system + request + random_tokens(n, g) for request in requests for n in (4, 9)]
    ids, mask = right_padded(rows)
    model = tiny_llama()
    shapes = []
    model.model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                          with_kwargs=True)
    prefix_shared_token_logprobs(model, ids, mask, start=37, group_size=2)
    length = ids.shape[1]
    assert shapes == [(1, 30), (1, 5), (1, 2 * (length - 35)), (1, 6), (1, 2 * (length - 36))]


def test_grouped_suffix_mask_by_hand():
    """2 suffixes of 3 tokens after a 2-token prefix: each sees the prefix and its own row up to itself."""
    from rl.workers.prefix_sharing import grouped_suffix_mask

    expected = torch.tensor([
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(grouped_suffix_mask(2, 3, 2)[0, 0], expected)


def test_block_mask_format_follows_the_attention_implementation():
    """SDPA takes the boolean mask, eager attention an additive one; anything else is refused by name."""
    from types import SimpleNamespace

    from rl.workers.prefix_sharing import _as_attention_mask, grouped_suffix_mask

    allowed = grouped_suffix_mask(2, 3, 2)
    model = lambda name: SimpleNamespace(config=SimpleNamespace(_attn_implementation=name))  # noqa: E731
    assert _as_attention_mask(model("sdpa"), allowed, torch.float32) is allowed
    additive = _as_attention_mask(model("eager"), allowed, torch.float32)
    assert torch.equal(additive == 0, allowed) and additive.min() == torch.finfo(torch.float32).min
    with pytest.raises(ValueError, match="attn_implementation sdpa or eager.*'flash_attention_2'"):
        _as_attention_mask(model("flash_attention_2"), allowed, torch.float32)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("group_size", [None, 2])
def test_gradient_checkpointing_gives_the_plain_logprobs_and_gradients(attn, group_size):
    """Checkpointed layers recompute their forward in the backward: the shared prefix (both levels) still reaches every
    suffix, and its gradient is the one of the plain forward without checkpointing."""
    g = torch.Generator().manual_seed(9)
    system = random_tokens(30, g)
    rows = [system + request + random_tokens(n, g) for request in (random_tokens(6, g), random_tokens(9, g))
            for n in (4, 12)]
    ids, mask = right_padded(rows)
    start = 36
    weights = torch.randn(ids.shape[0], ids.shape[1] - start, generator=g)
    model = tiny_llama(attn)
    lp_plain, g_plain = logprobs_and_grads(model, plain_logprobs, ids, mask, start, weights)
    model.gradient_checkpointing_enable()
    layer_calls = count_calls(model.model.layers[0])
    shared = lambda m, i, a, s: prefix_shared_token_logprobs(m, i, a, s, group_size=group_size)[0]  # noqa: E731
    lp_shared, g_shared = logprobs_and_grads(model, shared, ids, mask, start, weights)
    forwards = 2 if group_size is None else 1 + 2 * 2  # common prefix + suffixes, or + per group: extension + suffixes
    assert len(layer_calls) == 2 * forwards  # each checkpointed forward ran again in the backward
    torch.testing.assert_close(lp_shared, lp_plain, atol=1e-5, rtol=0)
    for name in g_plain:
        torch.testing.assert_close(g_shared[name], g_plain[name], atol=1e-5, rtol=0, msg=f"gradient of {name}")


def count_calls(module) -> list[None]:
    calls = []
    module.register_forward_pre_hook(lambda *_: calls.append(None))  # a replay may stop early, before forward hooks
    return calls


@pytest.mark.parametrize("checkpointing", [False, True])
def test_minibatch_prefix_across_micro_batches_gives_the_plain_gradients(checkpointing):
    """SharedPrefix: the prefix runs once for 3 micro-batches; their losses plus one backward of the surrogate give
    the gradients of the plain forward of all rows (the trainer's gradient accumulation, with the prefix shared),
    with gradient-checkpointed layers too (compared with the plain forward without checkpointing)."""
    from rl.workers.prefix_sharing import SharedPrefix

    g = torch.Generator().manual_seed(7)
    system, request = random_tokens(30, g), random_tokens(4, g)
    rows = [system + request + random_tokens(n, g) for n in (5, 9, 2, 7, 11, 3)]
    ids, mask = right_padded(rows)
    start = 34
    weights = torch.randn(ids.shape[0], ids.shape[1] - start, generator=g)
    model = tiny_llama()
    lp_plain, g_plain = logprobs_and_grads(model, plain_logprobs, ids, mask, start, weights)

    model.zero_grad(set_to_none=True)
    if checkpointing:
        model.gradient_checkpointing_enable()
    layer_calls = count_calls(model.model.layers[0])
    prefix = SharedPrefix(model, ids, mask, start)
    assert prefix.length == 33 and prefix.trainable  # stops before start - 1, whose logit predicts token `start`
    shapes = []
    model.model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                          with_kwargs=True)
    pieces = []
    for begin in range(0, 6, 2):
        rows_ = slice(begin, begin + 2)
        logprobs, _ = prefix.logprobs(model, ids[rows_], mask[rows_], start)
        real = mask[rows_, start:].float()
        (logprobs * real * weights[rows_]).sum().backward()
        pieces.append((logprobs * real).detach())
    prefix.surrogate_loss().backward()
    assert shapes == [(1, 2 * (ids.shape[1] - 33))] * 3  # no micro-batch re-ran the prefix; 2 suffixes end to end
    assert len(layer_calls) == (1 + 3) * (2 if checkpointing else 1)  # checkpointed: the backward replayed each forward
    torch.testing.assert_close(torch.cat(pieces), lp_plain, atol=1e-5, rtol=0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, g_plain[name], atol=1e-5, rtol=0, msg=f"gradient of {name}")


def test_minibatch_prefix_rejects_rows_that_do_not_share_it():
    from rl.workers.prefix_sharing import SharedPrefix

    g = torch.Generator().manual_seed(8)
    ids, mask = right_padded([random_tokens(20, g) + [5, 6] for _ in range(2)])
    with torch.no_grad():
        prefix = SharedPrefix(tiny_llama(), ids[:1], mask[:1], start=20)
        with pytest.raises(ValueError, match="shared prefix of 19 tokens"):
            prefix.logprobs(tiny_llama(), ids[1:], mask[1:], start=20)
    assert prefix.surrogate_loss() is None  # computed without grad: nothing to push back


def test_prefix_cache_replay_returns_the_same_keys_and_keeps_the_first():
    """A checkpointed layer calls `update` again in the backward: same prefix + new keys, nothing appended twice."""
    from rl.workers.prefix_cache import PrefixCache

    past = [(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)) for _ in range(2)]
    cache = PrefixCache(past, num_layers=2, keep=True)
    assert cache.get_seq_length() == 5  # HF sizes the attention mask from it: prefix + queries
    new_keys, new_values = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    first = cache.update(new_keys, new_values, 0)
    replay = cache.update(new_keys.clone(), new_values.clone(), 0)
    for a, b in zip(first, replay):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert first[0].shape == (1, 2, 8, 4) and cache.extended[0][0] is first[0] and cache.get_seq_length() == 5
    with pytest.raises(RuntimeError, match=r"layers \[1\] of 2 never read the shared prefix's cache"):
        cache.key_values()
    suffix_cache = PrefixCache(past, num_layers=2, keep=False)  # a suffix forward: nothing outlives it
    suffix_cache.update(new_keys, new_values, 0)
    assert suffix_cache.read_by == {0} and not suffix_cache.extended
