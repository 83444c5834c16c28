"""A/B in one process: the update step time of a one-rank CPU policy trainer, LoRA adapters vs full fine-tuning, and
the size of each one's checkpoint.

Both trainers are real `PolicyTrainer`s (DeepSpeed, gloo, fp32, prefix sharing on, the default GRPO algorithm with its
KL penalty: the full one holds a reference copy, the LoRA one switches its adapters off). Their updates alternate on
the same batch, so a machine whose load changes during the run slows both alike.

    python -m rl.bench.lora_step --model ~/.cache/afrl/models/smollm2-135m-instruct --rank 16
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def synthetic_batch(prompts: int, group_size: int, prompt_tokens: int, completion_tokens: int, vocab: int):
    """`prompts` requests x `group_size` samples sharing a `prompt_tokens` system prompt (one token differs per
    request at its end), each with its own completion; advantages alternate +1 / -1."""
    import torch

    from rl.algo.batch import collate
    from rollouts.types import FREE_TIER, Request, Sample

    generator = torch.Generator().manual_seed(0)
    shared = torch.randint(3, vocab, (prompt_tokens - 1,), generator=generator).tolist()
    samples = []
    for request in range(prompts):
        prompt = shared + [3 + request]
        for _ in range(group_size):
            completion = torch.randint(3, vocab, (completion_tokens,), generator=generator).tolist()
            samples.append(Sample(
                request=Request(f"r{request}", "q"), tier=FREE_TIER, token_ids=prompt + completion,
                loss_mask=[0] * len(prompt) + [1] * len(completion), sampler_logprobs=[0.0] * (len(prompt) + len(completion)),
                text="", truncated=False, n_turns=1,
            ))
    advantages = [1.0 if i % 2 == 0 else -1.0 for i in range(len(samples))]
    return collate(samples, advantages, pad_token_id=2)


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main() -> None:
    from rl.algo.config import AlgoConfig
    from rl.config import LoraConfig
    from rl.workers.cluster import free_port
    from rl.workers.deepspeed_rank import RankSpec
    from rl.workers.trainer import PolicyTrainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an HF causal-LM folder")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank, all linear layers)")
    parser.add_argument("--steps", type=int, default=3, help="timed updates per side, after one warm-up each")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    args = parser.parse_args()

    model = str(Path(args.model).expanduser())
    algo = AlgoConfig()  # the default GRPO: group of 4, KL penalty in the loss
    batch = synthetic_batch(2, algo.group_size, args.prompt_tokens, args.completion_tokens, vocab=49152)
    micro = args.micro_batch_size
    accum = len(batch) // micro
    sides = {"full": None, f"lora r{args.rank}": LoraConfig(rank=args.rank, alpha=2.0 * args.rank)}
    trainers = {}
    for name, lora in sides.items():
        spec = RankSpec(model, 0, 1, "127.0.0.1", free_port(), micro, accum, "cpu", "float32", 0, False, None)
        trainers[name] = PolicyTrainer(spec, algo, temperature=1.0, prefix_sharing=True, lora=lora)
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for step in range(args.steps + 1):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.update(batch, micro, kl_coef=algo.kl_coef)
            if step > 0:  # the first update of each side warms up allocator and kernels
                seconds[name].append(time.perf_counter() - start)
    print(f"{len(batch)} rows x ({args.prompt_tokens} prompt + {args.completion_tokens} completion) tokens, "
          f"micro-batch {micro}, {args.steps} timed updates each (alternating)")
    print(f"{'side':<10} {'trainable params':>17} {'update s (median)':>18} {'checkpoint MB':>14}")
    for name, trainer in trainers.items():
        trainable = sum(p.numel() for p in trainer.engine.module.parameters() if p.requires_grad)
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(directory)
            size = directory_bytes(Path(directory))
        print(f"{name:<10} {trainable:>17,} {statistics.median(seconds[name]):>18.2f} {size / 2**20:>14.1f}")


if __name__ == "__main__":
    main()
