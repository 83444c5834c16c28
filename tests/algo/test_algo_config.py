"""AlgoConfig validation and the conf/algo presets (composed with Hydra's schema, as the launcher does)."""
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rl.algo.config import AlgoConfig, build_kl_controller
from rl.algo.kl import AdaptiveKLController, FixedKLController
from rollouts.config_check import ConfigError

ALGO_DIR = Path(__file__).resolve().parents[2] / "conf" / "algo"
PRESETS = sorted(path.stem for path in ALGO_DIR.glob("*.yaml"))


def load_preset(name: str) -> AlgoConfig:
    schema = OmegaConf.structured(AlgoConfig)
    return OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(ALGO_DIR / f"{name}.yaml")))


def test_all_five_presets_exist():
    assert PRESETS == ["dapo", "dr_grpo", "grpo", "ppo", "rloo"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_keys_are_dataclass_fields_that_differ_from_the_defaults(name):
    preset, defaults = OmegaConf.load(ALGO_DIR / f"{name}.yaml"), AlgoConfig()
    assert set(preset.keys()) <= {f.name for f in fields(AlgoConfig)}
    assert [key for key, value in preset.items() if getattr(defaults, key) == value] == []


def test_dataclass_defaults_are_the_grpo_preset():
    assert load_preset("grpo") == AlgoConfig(scale_by_std=True)
    assert AlgoConfig().uses_std and AlgoConfig().kl_coef == 0.04


def test_presets_select_their_variants():
    grpo, dr_grpo, dapo, rloo, ppo = (load_preset(n) for n in ("grpo", "dr_grpo", "dapo", "rloo", "ppo"))
    assert grpo.uses_std and grpo.loss_aggregation == "seq_mean_token_mean" and grpo.kl_in == "loss"
    assert not dr_grpo.uses_std and dr_grpo.loss_aggregation == "seq_mean_token_sum_norm"
    assert dapo.clip_high == 0.28 and dapo.loss_aggregation == "token_mean"
    assert rloo.advantage == "rloo" and not rloo.uses_std and rloo.kl_in == "reward"
    assert ppo.uses_critic and ppo.advantage == "gae" and not grpo.uses_critic


def test_dataclass_defaults_are_valid_and_typed_for_hydra():
    config = OmegaConf.to_object(OmegaConf.structured(AlgoConfig))
    assert config == AlgoConfig()
    with pytest.raises(Exception, match="group_size"):  # OmegaConf's own type check on a structured config
        OmegaConf.merge(OmegaConf.structured(AlgoConfig), {"group_size": "many"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_size": 1}, r"algo\.group_size: expected an int >= 2 for name='grpo'.*got 1"),
        ({"clip_low": 0.0}, r"algo\.clip_low: expected a number in \(0, 1\), got 0.0"),
        ({"clip_high": -0.1}, r"algo\.clip_high: expected a number > 0, got -0.1"),
        ({"kl_estimator": "k4"}, r"algo\.kl_estimator: expected one of .*got 'k4'"),
        ({"kl_in": "advantage"}, r"algo\.kl_in: expected one of .*got 'advantage'"),
        ({"loss_aggregation": "sum"}, r"algo\.loss_aggregation: expected one of .*got 'sum'"),
        ({"name": "ppo"}, r"algo.advantage='group_norm' does not go with algo.name='ppo'"),
        ({"advantage": "gae"}, r"algo.advantage='gae' does not go with algo.name='grpo'"),
        ({"advantage": "dr_grpo", "scale_by_std": True},
         r"algo\.scale_by_std: expected null or false with advantage='dr_grpo' \(true only applies"),
        ({"adaptive_kl": True, "kl_coef": 0.0}, r"algo\.kl_coef: expected a number > 0 with adaptive_kl=true.*got 0.0"),
        ({"tis_cap": 0.5}, r"algo\.tis_cap: expected null or a number >= 1.*got 0.5"),
        ({"gamma": 1.5}, r"algo\.gamma: expected a number in \[0, 1\], got 1.5"),
        ({"ppo_epochs": 0}, r"algo\.ppo_epochs: expected a number >= 1, got 0"),
        ({"lr": 0.0}, r"algo\.lr: expected a number > 0, got 0.0"),
        ({"loss_norm_length": 0}, r"algo\.loss_norm_length: expected null or an int > 0, got 0"),
    ],
)
def test_bad_values_raise_naming_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        AlgoConfig(**overrides)


def test_bad_value_through_hydra_merge_raises_on_to_object():
    merged = OmegaConf.merge(OmegaConf.structured(AlgoConfig), {"group_size": 1})
    with pytest.raises(ConfigError, match="group_size"):
        OmegaConf.to_object(merged)


def test_scale_by_std_follows_advantage_unless_set():
    assert AlgoConfig(advantage="group_norm").uses_std
    assert not AlgoConfig(advantage="dr_grpo").uses_std
    assert not AlgoConfig(advantage="group_norm", scale_by_std=False).uses_std


def test_build_kl_controller():
    assert isinstance(build_kl_controller(AlgoConfig(kl_coef=0.1)), FixedKLController)
    adaptive = build_kl_controller(AlgoConfig(kl_coef=0.1, adaptive_kl=True, kl_target=3.0, kl_horizon=100))
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.value == 0.1 and adaptive.target == 3.0
