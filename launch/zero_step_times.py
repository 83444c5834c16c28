"""Policy update time per ZeRO stage on 2 CPU ranks (gloo): the same batch and model under each stage, timed after one
warm-up update. Prints one line per stage (figures for docs/benchmarks.md; not a test).

Usage: python launch/zero_step_times.py MODEL_DIR [--stages 2 3] [--updates 3] [--rows 8] [--prompt 96] [--completion 32]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rank_main(rank: int, port: int, args, stage: int, out: Path) -> None:
    import torch

    from rl.algo.batch import collate, shard_indices
    from rl.algo.config import AlgoConfig
    from rl.workers.deepspeed_rank import RankSpec
    from rl.workers.trainer import PolicyTrainer
    from rollouts.types import FREE_TIER, Request, Sample

    spec = RankSpec(args.model, rank, 2, "127.0.0.1", port, args.micro, args.rows // 2 // args.micro, "cpu",
                    "float32", 0, False, None, stage)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 1000, (args.prompt,), generator=generator).tolist()
    samples = []
    for i in range(args.rows):
        completion = torch.randint(3, 1000, (args.completion,), generator=generator).tolist()
        samples.append(Sample(request=Request("r", "q"), tier=FREE_TIER, token_ids=prompt + completion,
                              loss_mask=[0] * len(prompt) + [1] * len(completion),
                              sampler_logprobs=[0.0] * (len(prompt) + len(completion)), text="", truncated=False,
                              n_turns=1))
    batch = collate(samples, [1.0 if i % 2 else -1.0 for i in range(args.rows)], pad_token_id=2)
    mine = batch.select(shard_indices(len(batch), 2)[rank])
    trainer = PolicyTrainer(spec, AlgoConfig(lr=1e-6, kl_coef=0.04, tis_cap=None), temperature=1.0,
                            prefix_sharing=True)
    seconds, sync = [], []
    for _ in range(args.updates + 1):
        begin = time.perf_counter()
        trainer.update(mine, micro_batch_size=args.micro, kl_coef=0.04)
        seconds.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        trainer.get_weights()
        sync.append(time.perf_counter() - begin)
    if rank == 0:
        out.write_text(json.dumps({"update_s": seconds[1:], "get_weights_s": sync[1:]}))
    torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--completion", type=int, default=32)
    args = parser.parse_args()
    from rl.workers.cluster import free_port

    for stage in args.stages:
        out = Path(f"/tmp/zero_step_times_{stage}.json")
        mp.start_processes(rank_main, args=(free_port(), args, stage, out), nprocs=2, start_method="spawn")
        result = json.loads(out.read_text())
        print(f"ZeRO-{stage}, 2 CPU ranks, {args.rows} rows of {args.prompt}+{args.completion} tokens, "
              f"{Path(args.model).name}: update {statistics.median(result['update_s']):.2f} s, get_weights "
              f"{statistics.median(result['get_weights_s']):.3f} s (median of {args.updates})", flush=True)


if __name__ == "__main__":
    main()
