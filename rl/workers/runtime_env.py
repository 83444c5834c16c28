"""The Ray runtime_env of a run that joins an existing cluster (`ray.address`): the code and environment every actor
gets on every node. A local cluster (ray.address unset) gets none: its workers start from this checkout and inherit
this process's environment, as before.

- working_dir: this repository, which Ray uploads once and unpacks on each node as the workers' working directory (and
  import path), so the nodes run exactly the driver's code; .gitignore'd files (outputs/, runs/, wandb/, .venv/) and
  .git stay behind. The Python environment itself (torch, vLLM, DeepSpeed) must exist on every node at the same path.
- env_vars: the variables workers read that the driver may have set for this run (FORWARDED_NAMES, FORWARDED_PREFIXES,
  plus `ray.forward_env`). Secrets are not forwarded by the prefix rule (names holding TOKEN, KEY, SECRET or PASSWORD):
  the job's runtime_env is visible in the Ray dashboard. Credentials the workers need (HF_TOKEN for a gated hub model)
  belong in the nodes' own environment (the environment `ray start` ran in, which every worker inherits), or, knowingly,
  in ray.forward_env. CUDA_VISIBLE_DEVICES is never forwarded: Ray sets it per actor.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]

FORWARDED_NAMES = (
    "WANDB_MODE", "WANDB_DIR", "WANDB_SILENT", "TOKENIZERS_PARALLELISM", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "PYTORCH_CUDA_ALLOC_CONF", "TORCH_NCCL_BLOCKING_WAIT",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING",
)
FORWARDED_PREFIXES = ("AFRL_", "VLLM_", "NCCL_")
SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
NEVER_FORWARDED = ("CUDA_VISIBLE_DEVICES",)
# Besides .gitignore (which Ray reads): what the workers never need and may be large.
UPLOAD_EXCLUDES = [".git", ".venv", "outputs", "multirun", "runs", "wandb", "**/__pycache__", "*.safetensors"]


def forwarded_env(environ: Mapping[str, str], extra: list[str] = ()) -> dict[str, str]:
    """The variables of `environ` every worker gets: FORWARDED_NAMES, names with a FORWARDED_PREFIXES prefix that do
    not look like secrets, and the `extra` names (ray.forward_env) as they are."""
    def by_rule(name: str) -> bool:
        if name in NEVER_FORWARDED:
            return False
        if name in FORWARDED_NAMES:
            return True
        return name.startswith(FORWARDED_PREFIXES) and not any(mark in name for mark in SECRET_MARKERS)

    return {name: value for name, value in sorted(environ.items()) if by_rule(name) or name in extra}


def cluster_runtime_env(address: str | None, forward_env: list[str] = (), environ: Mapping[str, str] = os.environ,
                        repo_root: Path = REPO_ROOT) -> dict | None:
    """The job-wide runtime_env for ray.init on an existing cluster; None locally (`address` None). Actor-level
    env_vars (the learners' GLIBC_TUNABLES) are merged into it by Ray, variable by variable."""
    if address is None:
        return None
    missing = [name for name in forward_env if name not in environ]
    if missing:
        raise ValueError(f"ray.forward_env: {', '.join(missing)} not set in the driver's environment")
    return {"working_dir": str(repo_root), "excludes": list(UPLOAD_EXCLUDES),
            "env_vars": forwarded_env(environ, list(forward_env))}


def absolute_if_local(path: str) -> str:
    """A path that exists here, made absolute: the workers' working directory is the uploaded copy of the repository,
    where a relative path would not point at the same file. A hub id (nothing here by that name) stays as given."""
    expanded = Path(os.path.expanduser(path))
    return str(expanded.resolve()) if expanded.exists() else str(expanded)
