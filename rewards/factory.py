"""Build the RL reward named by `RewardConfig.name` (rule | rm | judge | mix).

Heavy dependencies (torch models, HTTP clients) are imported only for the reward that needs them.
"""
from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any

from rewards.base import Reward
from rewards.config import RewardConfig


def _as_reward_config(cfg: Any) -> RewardConfig:
    """Accept a RewardConfig, or an OmegaConf node / plain dict with its keys (as Hydra hands it over)."""
    if isinstance(cfg, RewardConfig):
        return cfg
    if is_dataclass(cfg):
        raise TypeError(f"build_reward: expected RewardConfig, got {type(cfg).__name__}")
    from omegaconf import OmegaConf  # only needed for configs coming from Hydra

    node = OmegaConf.merge(OmegaConf.structured(RewardConfig), cfg)
    return OmegaConf.to_object(node)


def build_component(name: str, cfg: RewardConfig, rm_scorer: Any = None) -> Reward:
    """One non-mix reward. `rm_scorer`: an already placed RewardModelScorer or Ray actor handle (else built here)."""
    if name == "rule":
        from rewards.rule import RuleReward

        return RuleReward(cfg.rule)
    if name == "rm":
        from rewards.rm import RMReward, RewardModelScorer

        return RMReward(rm_scorer if rm_scorer is not None else RewardModelScorer(cfg.rm), cfg.rm.timeout_s)
    if name == "judge":
        from rewards.judge_reward import JudgeReward

        return JudgeReward(cfg.judge)
    raise ValueError(f"reward.name: expected one of rule, rm, judge, mix, got {name!r}")


def build_reward(cfg: RewardConfig | Any, rm_scorer: Any = None) -> Reward:
    """The reward for RL. Validates the config first (ConfigError names the bad key)."""
    cfg = _as_reward_config(cfg).validate()
    if cfg.name == "mix":
        from rewards.mix import MixReward

        components = [(build_component(c.name, cfg, rm_scorer), c.weight) for c in cfg.mix.components]
        return MixReward(components, cfg.mix.format_penalty)
    return build_component(cfg.name, cfg, rm_scorer)
