"""afrl's Hydra entry point: `python launch/train.py +exp=helpful_only [key=value ...]`.

Composes conf/ into the typed TrainConfig (rl/config.py), validates it, and runs the RL loop (rl/loop.py).
Sweeps: `python launch/train.py -m +exp=helpful_only algo.kl_coef=0,0.05 seed=1,2`. Resume: `resume=true` (newest run
of the experiment) or `resume=PATH` (a run folder or checkpoint).
"""
from __future__ import annotations

import json
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
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl.config import load_config, register_schema  # noqa: E402

register_schema()


def sweep_group(exp_name: str) -> str | None:
    """In a multirun every job's W&B run joins one group named after the sweep, so they plot together."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{exp_name}-{Path(hydra_cfg.sweep.dir).name}"


def sft_first(config) -> str:
    """Fine-tune model.path with the `sft` section (reused when cached) and return the folder RL starts from."""
    from rl.repo_paths import resolve_repo_path
    from rl.sft.training import train_sft

    config.sft.data = resolve_repo_path(config.sft.data)
    print(f"[afrl] SFT before RL: {config.sft.kind} from {config.sft.data} on {config.sft.model}", flush=True)
    return str(train_sft(config.sft))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    logging.getLogger("afrl").setLevel(logging.INFO)
    if cfg.logger.group is None:
        cfg.logger.group = sweep_group(cfg.exp_name)
    config = load_config(cfg)
    run_dir = Path(config.run_dir or HydraConfig.get().runtime.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if config.sft is not None and not config.dry_run:
        config_dict["model"]["path"] = config.model.path = sft_first(config)
    info = {"exp_name": config.exp_name, "model": config.model.path, "wandb_group": config.logger.group,
            "overrides": list(HydraConfig.get().overrides.task)}
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=1) + "\n")
    if config.dry_run:  # the data and every prompt's length are checked too: a dry run passes only what a run would
        from rl.input_checks import check_run_inputs

        print(f"[afrl] dry run: config valid, {check_run_inputs(config).describe()}, run folder {run_dir}")
        return
    from rl.loop import train

    final_dir = train(config, run_dir, config_dict)
    print(f"[afrl] run finished: {final_dir}")


if __name__ == "__main__":
    main()
