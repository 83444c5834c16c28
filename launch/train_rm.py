"""Train a helpful-only reward model: `python launch/train_rm.py +rm=demo [rm.key=value ...]`.

Reads conf/train_rm.yaml + conf/rm/<name>.yaml into `rewards.rm_training.RMTrainConfig`, trains with TRL's
RewardTrainer, and writes an HF folder (model, tokenizer, rm_eval.json) that `reward=rm` loads. rm_eval.json and the
printed summary hold the held-out pairwise accuracy and, on the labelled outputs of rm.labeled_outputs (null to skip),
the compliant-vs-not AUROC and the mean score per kind. An existing folder is
reused unless rm.overwrite=true, so `make train` can call this every time and train only once.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # allow `python launch/train_rm.py` without an installed package
    sys.path.insert(0, str(REPO_ROOT))

from dataclasses import dataclass, field  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rewards.rm_training import RMTrainConfig, train_reward_model  # noqa: E402
from rl.run.repo_paths import resolve_repo_path  # noqa: E402


@dataclass
class TrainRMSchema:
    rm: RMTrainConfig = field(default_factory=RMTrainConfig)


ConfigStore.instance().store(name="train_rm_schema", node=TrainRMSchema)


@hydra.main(config_path="../conf", config_name="train_rm", version_base="1.3")
def main(cfg: DictConfig) -> None:
    rm_cfg: RMTrainConfig = OmegaConf.to_object(cfg.rm)
    rm_cfg.pairs = resolve_repo_path(rm_cfg.pairs)
    if rm_cfg.labeled_outputs:
        rm_cfg.labeled_outputs = resolve_repo_path(rm_cfg.labeled_outputs)
    print(OmegaConf.to_yaml(cfg.rm))
    train_reward_model(rm_cfg)


if __name__ == "__main__":
    main()
