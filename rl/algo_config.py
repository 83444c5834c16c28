"""The RL algorithm's settings: one dataclass, the schema of the Hydra group `conf/algo/`.

The field defaults are the grpo preset (the default of conf/config.yaml); the other presets (conf/algo/*.yaml) list
only what differs. Presets: grpo (Shao et al. 2024), dr_grpo (Liu et al. 2025), dapo (Yu et al. 2025; only its
clip-higher and token-level loss, not dynamic sampling or overlong shaping), rloo (Ahmadian et al. 2024), ppo (the
alignment-faking paper's algorithm: PPO with a critic and GAE, KL in the reward as in Ziegler et al. 2019).

Validation runs in `__post_init__`, i.e. when Hydra's config is turned into the object
(`OmegaConf.to_object(cfg.algo)`); every message names the key and the value found.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rl.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController
from rl.losses import AGGREGATIONS

ALGORITHMS = ("grpo", "ppo")
ADVANTAGES = ("group_norm", "dr_grpo", "rloo", "gae")
KL_PLACEMENTS = ("loss", "reward")


class AlgoConfigError(ValueError):
    """A bad `algo.*` setting; the message names the key and the value."""


@dataclass
class AlgoConfig:
    name: str = "grpo"  # grpo (no critic, outcome advantages) | ppo (critic + GAE)
    group_size: int = 4  # samples per prompt; GRPO/RLOO baselines need >= 2
    advantage: str = "group_norm"  # group_norm (GRPO) | dr_grpo (no std) | rloo (leave-one-out) | gae (PPO)
    scale_by_std: Optional[bool] = None  # None = by `advantage` (True for group_norm, False for dr_grpo)
    whiten_advantages: bool = False  # standardise advantages over the batch's trained tokens (usual with GAE)
    loss_aggregation: str = "seq_mean_token_mean"  # token_mean (DAPO) | seq_mean_token_mean (GRPO) | seq_mean_token_sum_norm (Dr. GRPO)
    loss_norm_length: Optional[int] = None  # Dr. GRPO's constant; None = the batch's padded length (set max_new_tokens)
    clip_low: float = 0.2  # ratio lower bound 1 - clip_low
    clip_high: float = 0.2  # ratio upper bound 1 + clip_high; DAPO clip-higher uses 0.28
    kl_coef: float = 0.04  # KL(pi || ref) coefficient (initial value when adaptive); 0 = no reference model needed
    kl_estimator: str = "k3"  # k1 | k2 | k3 (Schulman's estimators)
    kl_in: str = "loss"  # loss (GRPO) | reward (PPO-RLHF)
    adaptive_kl: bool = False  # Ziegler et al. 2019 adaptive coefficient
    kl_target: float = 6.0  # adaptive target, nats of KL summed over a response (Ziegler et al.: 6)
    kl_horizon: int = 10000  # adaptive horizon, in samples (Ziegler et al.: 10000)
    ppo_epochs: int = 1  # passes over each batch of rollouts
    minibatches: int = 1  # optimizer steps per epoch
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda
    value_clip: float = 0.2  # critic update clip around the old values
    entropy_coef: float = 0.0  # entropy bonus weight; 0 = entropy only logged
    tis_cap: Optional[float] = 2.0  # truncated importance sampling cap (Yao et al. 2025); None = off
    lr: float = 1e-6
    critic_lr: Optional[float] = None  # ppo: the value model's learning rate (None = lr); critics usually learn faster
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        _one_of("name", self.name, ALGORITHMS)
        _one_of("advantage", self.advantage, ADVANTAGES)
        _one_of("loss_aggregation", self.loss_aggregation, AGGREGATIONS)
        _one_of("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _one_of("kl_in", self.kl_in, KL_PLACEMENTS)
        if (self.name == "ppo") != (self.advantage == "gae"):
            raise AlgoConfigError(
                f"algo.advantage={self.advantage!r} does not go with algo.name={self.name!r}: "
                "gae needs the critic of name=ppo, and ppo uses advantage=gae"
            )
        if self.name == "grpo" and self.group_size < 2:
            raise AlgoConfigError(
                f"algo.group_size must be >= 2 for name='grpo' (the baseline is the other samples of the prompt), "
                f"got {self.group_size}"
            )
        if self.group_size < 1:
            raise AlgoConfigError(f"algo.group_size must be >= 1, got {self.group_size}")
        if self.scale_by_std is True and self.advantage != "group_norm":
            raise AlgoConfigError(
                f"algo.scale_by_std=true only applies to advantage='group_norm', got advantage={self.advantage!r} "
                "(dr_grpo is group_norm without the std)"
            )
        if self.loss_norm_length is not None and self.loss_norm_length <= 0:
            raise AlgoConfigError(f"algo.loss_norm_length must be > 0 or null, got {self.loss_norm_length}")
        if not 0 < self.clip_low < 1:
            raise AlgoConfigError(f"algo.clip_low must be in (0, 1), got {self.clip_low}")
        _positive("clip_high", self.clip_high)
        _at_least("kl_coef", self.kl_coef, 0)
        if self.adaptive_kl:
            if self.kl_coef <= 0:
                raise AlgoConfigError(
                    f"algo.kl_coef must be > 0 with adaptive_kl=true (it is the initial coefficient), got {self.kl_coef}"
                )
            _positive("kl_target", self.kl_target)
            _positive("kl_horizon", self.kl_horizon)
        _at_least("ppo_epochs", self.ppo_epochs, 1)
        _at_least("minibatches", self.minibatches, 1)
        for key in ("gamma", "lam"):
            value = getattr(self, key)
            if not 0 <= value <= 1:
                raise AlgoConfigError(f"algo.{key} must be in [0, 1], got {value}")
        _positive("value_clip", self.value_clip)
        _at_least("entropy_coef", self.entropy_coef, 0)
        if self.tis_cap is not None and self.tis_cap < 1:
            raise AlgoConfigError(
                f"algo.tis_cap must be >= 1 or null (a cap below 1 down-weights even exact matches), got {self.tis_cap}"
            )
        _positive("lr", self.lr)
        if self.critic_lr is not None:
            _positive("critic_lr", self.critic_lr)
        _at_least("weight_decay", self.weight_decay, 0)
        _positive("max_grad_norm", self.max_grad_norm)
        _at_least("warmup_steps", self.warmup_steps, 0)

    @property
    def uses_std(self) -> bool:
        """Whether group advantages are divided by the group std (GRPO) or only centred (Dr. GRPO)."""
        if self.scale_by_std is None:
            return self.advantage == "group_norm"
        return self.scale_by_std

    @property
    def uses_critic(self) -> bool:
        return self.name == "ppo"

    @property
    def uses_reference(self) -> bool:
        """A frozen reference model is only needed when some KL penalty is applied."""
        return self.kl_coef > 0


def build_kl_controller(config: AlgoConfig) -> FixedKLController | AdaptiveKLController:
    """The KL coefficient controller the config asks for (its value is checkpoint state: see state_dict)."""
    if config.adaptive_kl:
        return AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
    return FixedKLController(config.kl_coef)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AlgoConfigError(f"algo.{key} must be one of {allowed}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise AlgoConfigError(f"algo.{key} must be > 0, got {value}")


def _at_least(key: str, value: float, minimum: float) -> None:
    if not value >= minimum:
        raise AlgoConfigError(f"algo.{key} must be >= {minimum}, got {value}")
