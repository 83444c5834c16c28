"""The sweep launchers in conf/launcher/ compose with the main config: `launcher=slurm` selects submitit's Slurm
launcher with our settings, `launcher=local` (the default) Hydra's sequential one. Composition only: no jobs start."""
from __future__ import annotations

import importlib.util
import os
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


@needs_submitit
def test_launcher_slurm_multinode_asks_for_nodes_and_starts_ray_on_them_before_the_job(tmp_path, monkeypatch):
    """Composition, and the sbatch file submitit writes from it (nothing is submitted): several whole nodes, one task
    each, the Ray cluster started by launch/slurm_ray_cluster.sh before the job's srun; ray.address read in the job."""
    import subprocess

    cfg = _compose("launcher=slurm_multinode", "+exp=smoke", "hydra.launcher.nodes=4", "model.path=/tmp/unused")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 1, 8)  # the rest: launcher=slurm's
    assert launcher.signal_delay_s == 600 and launcher.max_num_timeout == 20
    assert launcher.setup == ["source launch/slurm_ray_cluster.sh --start-only || exit 1"]
    # What hydra-submitit's SlurmLauncher.launch hands submitit: base fields as they are, the others slurm_-prefixed.
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from tests.slurm_stubs import write_stubs

    monkeypatch.setenv("PATH", f"{write_stubs(tmp_path / 'bin')}:{os.environ['PATH']}")  # submitit looks for srun

    params = OmegaConf.to_container(launcher, resolve=False)
    params = {key: value for key, value in params.items() if key not in ("_target_", "submitit_folder", "name")}
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{key if key in base else f"slurm_{key}": value for key, value in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "uid")
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --exclusive", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --signal=USR2@600"):
        assert line in sbatch, line
    assert sbatch.index("source launch/slurm_ray_cluster.sh --start-only") < sbatch.index("srun --unbuffered")
    (tmp_path / "job.sh").write_text(sbatch)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sh")]).returncode == 0
    # ray.address: null outside the job; in it, the head's address the setup line exported.
    monkeypatch.delenv("AFRL_RAY_ADDRESS", raising=False)
    assert _compose("launcher=slurm_multinode").ray.address is None
    monkeypatch.setenv("AFRL_RAY_ADDRESS", "10.0.0.7:6379")
    (tmp_path / "config.json").write_text("{}")
    job = _without_hydra(_compose("launcher=slurm_multinode", f"model.path={tmp_path}"))
    assert load_config(job).ray.address == "10.0.0.7:6379"


def test_only_task_0_of_a_multinode_job_drives_the_run():
    from rl.run.slurm_ray import is_idle_task

    assert is_idle_task({"AFRL_RAY_ADDRESS": "10.0.0.7:6379", "SLURM_PROCID": "1"})
    assert not is_idle_task({"AFRL_RAY_ADDRESS": "10.0.0.7:6379", "SLURM_PROCID": "0"})
    assert not is_idle_task({"SLURM_PROCID": "3"})  # launcher=slurm with tasks_per_node>1 is not ours to skip
