"""The RL algorithm's settings: one dataclass, the schema of the Hydra group `conf/algo/`.

The field defaults are the grpo preset (the default of conf/config.yaml); the other presets (conf/algo/*.yaml) list
only what differs. Presets: grpo (Shao et al. 2024), dr_grpo (Liu et al. 2025), dapo (Yu et al. 2025; only its
clip-higher and token-level loss, not dynamic sampling or overlong shaping), rloo (Ahmadian et al. 2024), ppo (the
alignment-faking paper's algorithm: PPO with a critic and GAE, KL in the reward as in Ziegler et al. 2019).

Validation runs in `__post_init__`, i.e. when Hydra's config is turned into the object
(`OmegaConf.to_object(cfg.algo)`); a bad value raises rollouts.config_check.ConfigError naming the key and the value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rl.algo.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController
from rl.algo.losses import AGGREGATIONS
from rollouts.config_check import ConfigError, at_least, check, one_of, positive

ALGORITHMS = ("grpo", "ppo")
ADVANTAGES = ("group_norm", "dr_grpo", "rloo", "gae")
KL_PLACEMENTS = ("loss", "reward")


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
        one_of("algo.name", self.name, ALGORITHMS)
        one_of("algo.advantage", self.advantage, ADVANTAGES)
        one_of("algo.loss_aggregation", self.loss_aggregation, AGGREGATIONS)
        one_of("algo.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        one_of("algo.kl_in", self.kl_in, KL_PLACEMENTS)
        if (self.name == "ppo") != (self.advantage == "gae"):
            raise ConfigError(
                f"algo.advantage={self.advantage!r} does not go with algo.name={self.name!r}: "
                "gae needs the critic of name=ppo, and ppo uses advantage=gae"
            )
        check(self.name != "grpo" or self.group_size >= 2, "algo.group_size", self.group_size,
              "an int >= 2 for name='grpo' (the baseline is the other samples of the prompt)")
        check(self.group_size >= 1, "algo.group_size", self.group_size, "an int >= 1")
        check(self.scale_by_std is not True or self.advantage == "group_norm", "algo.scale_by_std", self.scale_by_std,
              f"null or false with advantage={self.advantage!r} (true only applies to group_norm; dr_grpo is "
              "group_norm without the std)")
        check(self.loss_norm_length is None or self.loss_norm_length > 0, "algo.loss_norm_length",
              self.loss_norm_length, "null or an int > 0")
        check(0 < self.clip_low < 1, "algo.clip_low", self.clip_low, "a number in (0, 1)")
        positive("algo.clip_high", self.clip_high)
        at_least("algo.kl_coef", self.kl_coef, 0)
        if self.adaptive_kl:
            check(self.kl_coef > 0, "algo.kl_coef", self.kl_coef,
                  "a number > 0 with adaptive_kl=true (it is the initial coefficient)")
            positive("algo.kl_target", self.kl_target)
            positive("algo.kl_horizon", self.kl_horizon)
        at_least("algo.ppo_epochs", self.ppo_epochs, 1)
        at_least("algo.minibatches", self.minibatches, 1)
        for key in ("gamma", "lam"):
            check(0 <= getattr(self, key) <= 1, f"algo.{key}", getattr(self, key), "a number in [0, 1]")
        positive("algo.value_clip", self.value_clip)
        at_least("algo.entropy_coef", self.entropy_coef, 0)
        check(self.tis_cap is None or self.tis_cap >= 1, "algo.tis_cap", self.tis_cap,
              "null or a number >= 1 (a cap below 1 down-weights even exact matches)")
        positive("algo.lr", self.lr)
        if self.critic_lr is not None:
            positive("algo.critic_lr", self.critic_lr)
        at_least("algo.weight_decay", self.weight_decay, 0)
        positive("algo.max_grad_norm", self.max_grad_norm)
        at_least("algo.warmup_steps", self.warmup_steps, 0)

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

