"""Refuse to start a run whose LLM judges cannot be reached.

A judge that is down would not stop the run: every verdict would become a counted judge failure, and the AF and
compliance curves would be empty or fallback values. So every judge the run will call (and does not serve itself:
those are health-checked when they start) must answer `GET <base_url>/models`, the OpenAI-compatible model list,
before the cluster starts.
"""
from __future__ import annotations

import httpx

from rewards.config import JudgeConfig
from rewards.judge_client import auth_headers
from rl.judge_server import judge_configs, unused_judge_paths

OFFLINE_HINT = ("or choose an offline proxy explicitly (classifier=ngram or classifier=heuristic for alignment-faking "
                "reasoning; compliance=tag_refusal for compliance)")


class JudgeUnreachableError(RuntimeError):
    pass


def external_judges(cfg) -> list[tuple[str, JudgeConfig]]:
    """(dotted path, config) of the judges the run calls and does not serve itself."""
    skip = unused_judge_paths(cfg)
    return [(path, judge) for path, judge in judge_configs(cfg) if path not in skip and not judge.serve]


def probe_judge(path: str, judge: JudgeConfig, timeout_s: float = 5.0) -> None:
    """Raise JudgeUnreachableError naming `path` unless the endpoint lists its models with the configured key."""
    url = f"{judge.base_url.rstrip('/')}/models"
    fixes = (f"start an OpenAI-compatible server there, set {path}.base_url=..., or let the run serve an open model "
             f"({path}.serve=true {path}.model=<HF model>), {OFFLINE_HINT}")
    try:
        response = httpx.get(url, headers=auth_headers(judge), timeout=timeout_s)
    except httpx.HTTPError as error:
        raise JudgeUnreachableError(f"{path}.base_url={judge.base_url}: no judge answers ({type(error).__name__}: "
                                    f"{error}). This run needs an LLM judge: {fixes}") from None
    if response.status_code in (401, 403):
        raise JudgeUnreachableError(f"{path}: the judge at {judge.base_url} refused the key from "
                                    f"${judge.api_key_env} (HTTP {response.status_code})")
    if response.status_code != 200:
        raise JudgeUnreachableError(f"{path}.base_url={judge.base_url}: GET /models answered HTTP "
                                    f"{response.status_code}, not an OpenAI-compatible judge. {fixes}")


def check_judge_endpoints(cfg, timeout_s: float = 5.0) -> list[str]:
    """Probe every external judge of the run (a TrainConfig); returns the paths checked."""
    checked = []
    for path, judge in external_judges(cfg):
        probe_judge(path, judge, timeout_s)
        checked.append(path)
    return checked
