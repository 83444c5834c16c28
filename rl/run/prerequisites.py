"""What a paper-sized experiment needs before it can start, checked when the config loads (rl/config.py): requests
other than the demo set, and a reward model that exists. Every missing piece is named in one error with the command
or override that supplies it, so a dry run lists all of them at once.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from rewards.config import model_path_is_local
from rl.run.data_order import passes_over_data
from rl.run.repo_paths import REPO_ROOT
from rollouts.config_check import ConfigError
from rollouts.datasets import load_requests, split_requests

RM_PRESETS_DIR = REPO_ROOT / "conf" / "rm"

DATA_WAYS_OUT = (
    "  data=advbench data.path=<AdvBench harmful_behaviors.csv>\n"
    "  data=hf  (LLM-LAT/harmful-dataset from the hub; needs the `datasets` package)\n"
    "  data=file data.path=<your .jsonl/.csv/.parquet> data.text_column=<column>\n"
    "or data.allow_demo=true to run on the demo set anyway")


def demo_data_problem(cfg) -> str | None:
    """The paper-sized experiments set data.allow_demo=false: the demo set is too small for their step count."""
    if cfg.data.source != "demo" or cfg.data.allow_demo:
        return None
    train, _ = split_requests(load_requests(cfg.data, cfg.setting.name), cfg.data.eval_fraction, cfg.data.split_salt)
    passes = passes_over_data(cfg.total_steps, cfg.rollout.prompts_per_step, len(train))
    return (f"data.source=demo with data.allow_demo=false: {cfg.exp_name} is paper-sized, and the project's demo set "
            f"gives {len(train)} training requests, which total_steps={cfg.total_steps} x rollout.prompts_per_step="
            f"{cfg.rollout.prompts_per_step} would pass over {passes:.0f} times. Give it real requests:\n"
            f"{DATA_WAYS_OUT}")


def rm_preset_named(folder_name: str) -> str | None:
    """The conf/rm preset whose `name` is this folder's name (launch/train_rm.py writes reward_models/<name>)."""
    for preset in sorted(RM_PRESETS_DIR.glob("*.yaml")):
        if OmegaConf.load(preset).get("name") == folder_name:
            return preset.stem
    return None


def rm_build_command(model_path: str) -> str:
    """The exact command that writes a reward model into `model_path`."""
    preset = rm_preset_named(Path(model_path).name)
    if preset is not None:
        return f"python launch/train_rm.py +rm={preset} rm.output_dir={model_path}"
    return (f"python launch/train_rm.py +rm=demo rm.pairs=<your prompt/chosen/rejected .jsonl> rm.max_pairs=null "
            f"rm.labeled_outputs=null rm.output_dir={model_path}")


def reward_model_problem(cfg) -> str | None:
    """A local reward-model folder the reward uses but nobody has built yet."""
    path = cfg.reward.rm.model_path
    if "rm" not in cfg.reward.used_components or path.strip() in ("", "???"):
        return None  # not used, or unset: RMConfig.validate names the key
    if not model_path_is_local(path) or Path(os.path.expanduser(path), "config.json").is_file():
        return None
    return (f"reward.rm.model_path={path}: no reward model there (no config.json). Build it from pair data with\n"
            f"  {rm_build_command(path)}\n"
            "(conf/rm/*.yaml say which pairs and backbone; rm.pairs=<local copy> when the hub is unreachable), or "
            "pass reward.rm.model_path=<an HF sequence-classification model folder or hub id>")


def check_prerequisites(cfg) -> None:
    """Raise one ConfigError naming every missing prerequisite (real data, a built reward model)."""
    problems = [p for p in (demo_data_problem(cfg), reward_model_problem(cfg)) if p]
    if problems:
        raise ConfigError(f"{cfg.exp_name} cannot start:\n- " + "\n- ".join(problems))
