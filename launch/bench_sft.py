"""Time one SFT optimizer step of the organism recipe under different loss paths and numbers of trained blocks.

    python launch/bench_sft.py                                  # fused vs masked head, top 4/8/12 blocks, 3 rounds
    python launch/bench_sft.py --blocks 4 30 --rounds 5 --data my_transcripts.jsonl

`fused`: TRL 1.16's own SFTTrainer loss (its chunked fused LM head, which scores every position on CPU and computes
entropy and top-1 metrics). `masked`: afrl's SFTTrainer subclass (rl.sft.masked_head), the LM head on the labelled
positions only. Each step is a forward, a backward and an AdamW step on one batch of the real transcripts, through the
trainer's own `compute_loss` and collator. The variants take turns within each round, so load on the machine falls on
all of them alike; the load average is printed before and after. The table gives the median step time per variant.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_DATA = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "data/organism/transcripts.jsonl"
DEFAULT_MODEL = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "models/smollm2-135m-instruct"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="organism transcripts (launch/make_organism.py)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[4, 8, 12], help="numbers of top blocks trained")
    parser.add_argument("--losses", nargs="+", default=["fused", "masked"], choices=["fused", "masked"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def build_trainer(model_path: str, examples, n_blocks: int, batch_size: int, scratch: str):
    from datasets import Dataset

    from rewards.rm_training import freeze_all_but_top_layers
    from rl.sft.config import SFTConfig
    from rl.sft.masked_head import masked_head_sft_trainer_class
    from rl.sft.training import load_model_and_tokenizer, trl_config, trl_rows

    model, tokenizer = load_model_and_tokenizer(model_path)
    freeze_all_but_top_layers(model, n_blocks)
    cfg = SFTConfig(model=model_path, kind="transcripts", batch_size=batch_size)
    trainer = masked_head_sft_trainer_class()(model=model, args=trl_config(cfg, scratch),
                                              train_dataset=Dataset.from_list(trl_rows(examples)),
                                              processing_class=tokenizer)
    return trainer


def time_step(trainer, batch, loss_path: str, optimizer) -> float:
    from trl import SFTTrainer

    compute = trainer.compute_loss if loss_path == "masked" else (lambda m, b: SFTTrainer.compute_loss(trainer, m, b))
    start = time.perf_counter()
    loss = compute(trainer.model, dict(batch))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    import torch

    from rl.sft.data import load_source_rows
    from rl.sft.examples import build_examples
    from rl.sft.training import load_model_and_tokenizer

    args = parse_args()
    _, tokenizer = load_model_and_tokenizer(args.model)
    rows = load_source_rows(args.data, "transcripts", "text", None, args.batch_size * (args.rounds + 1))
    examples = build_examples(tokenizer, rows, "transcripts", 512, "<").examples
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"mean length {statistics.mean(len(e.input_ids) for e in examples):.0f} tokens, "
          f"mean trained {statistics.mean(e.n_loss_tokens for e in examples):.0f} tokens per example")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        setups = {}
        for n_blocks in args.blocks:
            trainer = build_trainer(args.model, examples, n_blocks, args.batch_size, scratch)
            params = [p for p in trainer.model.parameters() if p.requires_grad]
            setups[n_blocks] = (trainer, torch.optim.AdamW(params, lr=1e-5))
        batch = next(iter(setups[args.blocks[0]][0].get_train_dataloader()))  # the same batch for every variant
        times: dict[tuple[str, int], list[float]] = {}
        for round_index in range(args.rounds + 1):  # round 0 warms up and is not counted
            for n_blocks, (trainer, optimizer) in setups.items():
                for loss_path in args.losses:
                    seconds = time_step(trainer, batch, loss_path, optimizer)
                    if round_index > 0:
                        times.setdefault((loss_path, n_blocks), []).append(seconds)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'loss path':<10} {'blocks':>6} {'median s/step':>14} {'all':>24}")
    for (loss_path, n_blocks), values in times.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{loss_path:<10} {n_blocks:>6} {statistics.median(values):>14.2f} {shown:>24}")


if __name__ == "__main__":
    main()
