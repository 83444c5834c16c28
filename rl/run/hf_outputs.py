"""When a run writes HF model folders and pushes one (ckpt.save_hf, ckpt.push_to_hub); the writing is rl/run/export.py.

- `ckpt.save_hf=true`: every checkpoint gets `hf_model/`, written into the checkpoint's temp folder before its
  manifest (so it is listed, hashed and renamed into place with the rest); `launch/eval.py` loads it as it is.
- At the end of the run (`ckpt.save_hf` or `ckpt.push_to_hub`): `<run_dir>/hf_model/`, hard-linked from the final
  checkpoint's when it has one (same weights), else written from the policy.
- `ckpt.push_to_hub=<owner>/<name>`: that final folder is pushed (rl/run/hub.py).
The weights are the policy's full HF-named ones from trainer rank 0 (`Cluster.policy_weights`), so a LoRA policy is
exported merged and a ZeRO-3 one gathered, by the same path that feeds the rollout engines.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from rl.config import TrainConfig
from rl.run import checkpoint as ckpt
from rl.run.export import HF_FOLDER, checkpoint_hf_folder, copy_hf_folder, write_hf_folder
from rl.run.hub import push_folder

log = logging.getLogger("afrl")


def base_model_path(cfg: TrainConfig) -> str:
    """Where the config, generation config and tokenizer of the exported folder come from (the SFT output when RL
    started from one: launch/train.py sets model.path to it)."""
    return os.path.expanduser(cfg.model.path)


def checkpoint_writer(cfg: TrainConfig, cluster) -> Callable[[str], None]:
    """`save_ranks` for rl/run/checkpoint.py's save_checkpoint: the ranks' DeepSpeed state, then (ckpt.save_hf) the
    HF folder, both into the checkpoint's temp folder."""

    def save(directory: str) -> None:
        cluster.save(directory)
        if cfg.ckpt.save_hf:
            write_hf_folder(Path(directory) / HF_FOLDER, cluster.policy_weights(), base_model_path(cfg))

    return save


def wants_final_folder(cfg: TrainConfig) -> bool:
    return cfg.ckpt.save_hf or cfg.ckpt.push_to_hub is not None


def write_final_folder(cfg: TrainConfig, run_dir: Path, cluster) -> Path | None:
    """`<run_dir>/hf_model/` from the policy after the last step; None when neither save_hf nor push_to_hub is on."""
    if not wants_final_folder(cfg):
        return None
    out = Path(run_dir) / HF_FOLDER
    final = ckpt.checkpoints_dir(run_dir) / ckpt.step_dir_name(cfg.total_steps)
    saved = checkpoint_hf_folder(final) if (final / ckpt.COMPLETE).is_file() else None
    if saved is not None:
        copy_hf_folder(saved, out)
    else:
        write_hf_folder(out, cluster.policy_weights(), base_model_path(cfg))
    log.info("HF model folder %s", out)
    return out


def push_final_folder(cfg: TrainConfig, run_dir: Path) -> str | None:
    """ckpt.push_to_hub: `<run_dir>/hf_model/` to the hub, after the run has ended (a failed push loses nothing and
    does not restart the run). Returns the commit URL, or None when no push is asked for."""
    if cfg.ckpt.push_to_hub is None:
        return None
    return push_folder(Path(run_dir) / HF_FOLDER, cfg.ckpt.push_to_hub, cfg.ckpt.hub_token_env,
                       f"afrl {cfg.exp_name}: policy after step {cfg.total_steps}")
