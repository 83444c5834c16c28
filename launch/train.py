"""afrl's Hydra entry point: `python launch/train.py +exp=helpful_only [key=value ...]`.

Composes conf/ into the typed TrainConfig (rl/config.py), validates it, and runs the RL loop (rl/loop.py).
Sweeps: `python launch/train.py -m +exp=helpful_only algo.kl_coef=0,0.05 seed=1,2`. Resume: `resume=true` (newest run
of the experiment) or `resume=PATH` (a run folder or checkpoint).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# Engines are spawned processes (vLLM); keep noisy libraries quiet unless asked, before they are imported.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl.config import load_config, register_schema  # noqa: E402

register_schema()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from rl.loop import train

    logging.getLogger("afrl").setLevel(logging.INFO)
    config = load_config(cfg)
    run_dir = Path(config.run_dir or HydraConfig.get().runtime.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    final_dir = train(config, run_dir, OmegaConf.to_container(cfg, resolve=True))
    print(f"[afrl] run finished: {final_dir}")


if __name__ == "__main__":
    main()
