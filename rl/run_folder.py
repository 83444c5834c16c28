"""The default run folder of a single run (`hydra.run.dir`): stable for a requeued Slurm job, unique otherwise.

- In a Slurm job: `outputs/<exp_name>/slurm-<job id>` (`<array job>_<task>` for an array task). A requeued job keeps
  its id, so it finds its own checkpoints there and `resume=auto` continues them. A second run of the same experiment
  inside one allocation (salloc) would find the first one's folder: give it a run_dir.
- Elsewhere: `outputs/<exp_name>/<date>_<time>-<pid>`; two launches in the same second differ by pid, and the run
  folder's lock (rl/run_lock.py) stops a second writer whatever the names.
- `run_dir=PATH` wins, and Hydra writes its own files (.hydra/, train.log) there too.
Sweeps use hydra.sweep.dir/subdir: the sweep folder is resolved once by the launching process and travels with the
pickled job, so a requeued sweep job finds its subfolder again.
"""
from __future__ import annotations

import os
from datetime import datetime

from omegaconf import OmegaConf

RESOLVER = "afrl_run_dir"


def slurm_job_name(environ=os.environ) -> str | None:
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm-{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    if environ.get("SLURM_JOB_ID"):
        return f"slurm-{environ['SLURM_JOB_ID']}"
    return None


def default_run_name(environ=os.environ) -> str:
    return slurm_job_name(environ) or f"{datetime.now():%Y-%m-%d_%H-%M-%S}-{os.getpid()}"


def run_dir_default(run_dir: str | None, exp_name: str) -> str:
    return str(run_dir) if run_dir else f"outputs/{exp_name}/{default_run_name()}"


def register_resolver() -> None:
    # Cached: Hydra resolves hydra.run.dir more than once, and the time must not move between those.
    OmegaConf.register_new_resolver(RESOLVER, run_dir_default, use_cache=True, replace=True)
