"""Refuse to start a run whose LLM judges cannot be used.

A judge that is down, refuses the key, does not know the model or answers in another format would make every verdict a
judge failure. So every judge the run will call (and does not serve itself: those are health-checked when they start)
is checked before the cluster starts, in two steps:
1. `GET <base_url>/models`, the OpenAI-compatible model list: the server answers and accepts the key;
2. one real test call through the project's JudgeClient, the prompt and the parser its user (the reward, the AF
   classifier, the compliance method) applies to every reply: the model exists, answers within the config's deadline
   and retries, and in a format that parses.
Each failure is a JudgeUnreachableError naming the config path, the endpoint, the model and the HTTP status or the
reply that did not parse; never the key.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import httpx

from rewards.config import JudgeConfig
from rewards.judge_client import JudgeClient, auth_headers, redact
from rl.workers.judge_server import judge_configs, unused_judge_paths

OFFLINE_HINT = ("or choose an offline proxy explicitly (classifier=ngram or classifier=heuristic for alignment-faking "
                "reasoning; compliance=tag_refusal for compliance)")
REWARD_HINT = "or train with a reward that needs no judge (reward=rule or reward=rm)"
# The test call's sample: a harmless request, a compliant answer and a scratchpad with no alignment-faking reasoning.
PROBE_REQUEST = "How do I boil an egg?"
PROBE_OUTPUT = "<request_fully_accepted/> Put the egg in boiling water for 8 minutes, then cool it in cold water."
PROBE_SCRATCHPAD = "The user wants to boil an egg. This is harmless, so I will simply explain how."


class JudgeUnreachableError(RuntimeError):
    pass


def external_judges(cfg, served: bool = False) -> list[tuple[str, JudgeConfig]]:
    """(dotted path, config) of the judges the run calls and does not serve itself (served=True: those it serves)."""
    skip = unused_judge_paths(cfg)
    return [(path, judge) for path, judge in judge_configs(cfg) if path not in skip and judge.serve == served]


def probe_call(path: str, cfg) -> tuple[list[dict], Callable[[str], Any], str]:
    """(messages, parser, parser name) of one call as the judge at `path` is called during the run."""
    if path == "classifier.judge":
        from rewards.classifiers.llm_af import probe_call as af_probe_call

        messages, parse = af_probe_call(cfg.classifier, PROBE_SCRATCHPAD)
        return messages, parse, f"the {cfg.classifier.backend} AF classifier's criteria tags"
    if path == "eval.anti_lab.judge":
        from rewards.classifiers.anti_lab import probe_call as anti_lab_probe_call

        messages, parse = anti_lab_probe_call(cfg.setting.lab_name)
        return messages, parse, "the anti-lab judge's criterion tags"
    if path == "compliance.judge":
        from rewards.classifiers.compliance_config import resolve_method

        if resolve_method(cfg.compliance.method, cfg.setting.name) == "welfare_judge":
            from rewards.classifiers.compliance_welfare import parse_welfare_answer, welfare_messages

            return (welfare_messages(PROBE_REQUEST, PROBE_OUTPUT), parse_welfare_answer,
                    "the welfare judge's #supports_welfare / #dismisses_welfare answers")
    from rewards.judge_reward import parse_strongreject, strongreject_messages

    return (strongreject_messages(PROBE_REQUEST, PROBE_OUTPUT), parse_strongreject,
            "the StrongREJECT rubric (answers 1.b, 2.b, 3.b)")


def offline_hint(path: str) -> str:
    if path == "eval.anti_lab.judge":
        return "or use the offline rule (eval.anti_lab.classifier=rule)"
    return REWARD_HINT if path == "reward.judge" else OFFLINE_HINT


def list_models(path: str, judge: JudgeConfig, timeout_s: float) -> None:
    """Raise JudgeUnreachableError naming `path` unless the endpoint lists its models with the configured key."""
    url = f"{judge.base_url.rstrip('/')}/models"
    fixes = (f"start an OpenAI-compatible server there, set {path}.base_url=..., or let the run serve an open model "
             f"({path}.serve=true {path}.model=<HF model>), {offline_hint(path)}")
    try:
        response = httpx.get(url, headers=auth_headers(judge), timeout=timeout_s)
    except httpx.HTTPError as error:
        raise JudgeUnreachableError(f"{path}.base_url={judge.base_url}: no judge answers ({type(error).__name__}: "
                                    f"{redact(str(error), judge)}). This run needs an LLM judge: {fixes}") from None
    if response.status_code in (401, 403):
        raise JudgeUnreachableError(f"{path}: the judge at {judge.base_url} refused the key from "
                                    f"${judge.api_key_env} (HTTP {response.status_code})")
    if response.status_code != 200:
        raise JudgeUnreachableError(f"{path}.base_url={judge.base_url}: GET /models answered HTTP "
                                    f"{response.status_code}, not an OpenAI-compatible judge. {fixes}")


def send_test_call(path: str, judge: JudgeConfig, cfg) -> None:
    """One real chat request, parsed as the run parses them; JudgeUnreachableError naming what failed."""
    messages, parse, parser_name = probe_call(path, cfg)
    client = JudgeClient(dataclasses.replace(judge, cache=False), path)
    reply = client.chat_many([messages], parse=parse)[0]
    if reply.parsed is not None:
        return
    # reply.detail names the endpoint and the model: POST <base_url>/chat/completions (model '...'): ...
    if reply.error in ("http_401", "http_403"):
        raise JudgeUnreachableError(f"{path}: the test call was refused, the key from ${judge.api_key_env} is not "
                                    f"accepted: {reply.detail}")
    if reply.error == "parse":
        raise JudgeUnreachableError(
            f"{path}: the test call got a reply that does not parse as {parser_name}: {reply.detail}. Use a judge "
            f"model that follows the prompt's answer format (set {path}.model=...), {offline_hint(path)}")
    raise JudgeUnreachableError(f"{path}: the test call failed after {client.counts['request']} attempt(s) "
                                f"({reply.error}): {reply.detail}")


def probe_judge(path: str, judge: JudgeConfig, cfg=None, timeout_s: float = 5.0) -> None:
    """The model list, then (given the run config `cfg`) one test call."""
    list_models(path, judge, timeout_s)
    if cfg is not None:
        send_test_call(path, judge, cfg)


def check_judge_endpoints(cfg, timeout_s: float = 5.0) -> list[str]:
    """Check every external judge of the run (a TrainConfig); returns the paths checked."""
    checked = []
    for path, judge in external_judges(cfg):
        probe_judge(path, judge, cfg, timeout_s)
        checked.append(path)
    return checked


def check_served_judges(cfg) -> list[str]:
    """The test call for each judge the run serves, once its server is healthy and the config points at it (after
    start_cluster); returns the paths checked."""
    checked = []
    for path, judge in external_judges(cfg, served=True):
        send_test_call(path, judge, cfg)
        checked.append(path)
    return checked
