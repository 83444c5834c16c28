"""The sweep launchers in conf/launcher/ compose with the main config: `launcher=slurm` selects submitit's Slurm
launcher with our settings, `launcher=local` (the default) Hydra's sequential one. Composition only: no jobs start."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from rl.config import load_config, register_schema

CONF = Path(__file__).resolve().parents[2] / "conf"


def _has_submitit() -> bool:
    try:  # find_spec raises, not returns None, when the parent namespace `hydra_plugins` does not exist at all
        return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
    except ModuleNotFoundError:
        return False


SUBMITIT = _has_submitit()
needs_submitit = pytest.mark.skipif(
    not SUBMITIT, reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]')"
)


def _compose(*overrides: str):
    register_schema()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _without_hydra(cfg):
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_default_launcher_is_hydras_sequential_one():
    cfg = _compose()
    assert cfg.hydra.runtime.choices["launcher"] == "local"
    assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@needs_submitit
def test_launcher_slurm_selects_submitit_with_our_job_settings():
    cfg = _compose("launcher=slurm", "+exp=smoke", "hydra.launcher.partition=gpu", "model.path=/tmp/unused")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
    assert (launcher.partition, launcher.name, launcher.nodes, launcher.tasks_per_node) == ("gpu", "afrl-smoke", 1, 1)
    assert launcher.gpus_per_node == 8 and launcher.timeout_min == 1440 and launcher.max_num_timeout == 20
    assert launcher.signal_delay_s == 600  # the warning before the time limit covers one step and one save
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    # The launcher lives under hydra.*: the run config itself is unchanged and still loads into TrainConfig.
    assert "launcher" not in cfg
    plain = _compose("+exp=smoke", "model.path=/tmp/unused")
    assert OmegaConf.to_container(_without_hydra(cfg)) == OmegaConf.to_container(_without_hydra(plain))


@needs_submitit
def test_launcher_local_parallel_selects_submitits_local_executor():
    cfg = _compose("launcher=local_parallel")
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert cfg.hydra.launcher.gpus_per_node == 0


def test_a_launcher_that_does_not_exist_is_named_in_the_error():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="launcher"):
        _compose("launcher=pbs")


def test_launcher_choice_does_not_reach_the_typed_config(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg = _without_hydra(_compose("launcher=slurm" if SUBMITIT else "launcher=local", f"model.path={tmp_path}"))
    assert load_config(cfg).model.path == str(tmp_path)
