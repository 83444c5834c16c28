"""Supervised fine-tuning: `python launch/sft.py +sft=<preset> [sft.key=value ...]` (presets in conf/sft/).

Reads conf/sft.yaml + conf/sft/<preset>.yaml into `rl.sft.config.SFTConfig`, fine-tunes the base model with TRL's
SFTTrainer on documents or transcripts, and writes an HF folder (default $AFRL_CACHE/sft/<name>) that the RL run takes
as `model.path=`. A folder trained from the same data, config and base model is reused (sft.overwrite=true retrains).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # allow `python launch/sft.py` without an installed package
    sys.path.insert(0, str(REPO_ROOT))

from dataclasses import dataclass, field  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl.run.repo_paths import resolve_repo_path  # noqa: E402
from rl.sft.config import SFTConfig  # noqa: E402
from rl.sft.training import train_sft  # noqa: E402


@dataclass
class SFTSchema:
    sft: SFTConfig = field(default_factory=SFTConfig)


ConfigStore.instance().store(name="sft_schema", node=SFTSchema)


@hydra.main(config_path="../conf", config_name="sft", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sft_cfg: SFTConfig = OmegaConf.to_object(cfg.sft)
    sft_cfg.data = resolve_repo_path(sft_cfg.data)
    print(OmegaConf.to_yaml(cfg.sft))
    train_sft(sft_cfg)


if __name__ == "__main__":
    main()
