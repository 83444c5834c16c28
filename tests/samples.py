"""For the tests of the policy trainer and the critic: a training `Sample`, and the spec of a single local CPU rank."""
from __future__ import annotations

from rl.workers.cluster import free_port
from rl.workers.deepspeed_rank import RankSpec
from rollouts.types import FREE_TIER, Request, Sample


def sample_of(prompt: list[int], completion: list[int]) -> Sample:
    """A free-tier sample whose completion tokens are trained, with zero sampler log-probs."""
    return Sample(
        request=Request("r", "q"), tier=FREE_TIER, token_ids=prompt + completion,
        loss_mask=[0] * len(prompt) + [1] * len(completion), sampler_logprobs=[0.0] * (len(prompt) + len(completion)),
        text="", truncated=False, n_turns=1,
    )


def one_cpu_rank(model_dir, micro_batch_size: int, grad_accum_steps: int) -> RankSpec:
    """Rank 0 of 1 on this machine's CPU (gloo, fp32, seed 0), without gradient checkpointing or a length normaliser."""
    return RankSpec(str(model_dir), 0, 1, "127.0.0.1", free_port(), micro_batch_size, grad_accum_steps, "cpu",
                    "float32", 0, False, None)


def lora_config(rank: int = 8, **fields):
    """A model.lora section with adapters on every linear layer; skips the test where PEFT is not installed."""
    import pytest

    pytest.importorskip("peft", reason="LoRA needs peft (pyproject.toml)")
    from rl.config import LoraConfig

    return LoraConfig(rank=rank, **fields)
