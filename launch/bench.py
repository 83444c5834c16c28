"""Benchmark afrl against TRL's GRPOTrainer on the same GRPO workload: `python launch/bench.py [key=value ...]`.

    python launch/bench.py                          # workload=short on CPU: afrl and TRL alternating, table + JSON
    python launch/bench.py workload=paper steps=2   # the paper-length system prompt (few-shot examples, > 3k tokens)
    python launch/bench.py hardware=gpu             # afrl only, one CUDA GPU, 0.5B model in bf16: tokens/s and MFU

Config: conf/bench/ (schema rl/bench/config.py). afrl's side is composed from conf/ exactly like launch/train.py, plus
`'afrl_overrides=["trainer.micro_batch_size=8"]'` for anything else. What is measured and how: rl/bench/*.py docstrings.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl.bench.config import BenchConfig, validate_bench  # noqa: E402

ConfigStore.instance().store(name="bench_schema", node=BenchConfig)


@hydra.main(version_base="1.3", config_path="../conf/bench", config_name="bench")
def main(cfg: DictConfig) -> None:
    from rl.bench.run import run_bench

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config: BenchConfig = OmegaConf.to_object(cfg)
    validate_bench(config)
    run_bench(config)


if __name__ == "__main__":
    main()
