"""A run refuses to start when an LLM judge it will call does not answer (rl/workers/judge_preflight.py), and the
paper-sized experiment asks for one by default; every eval logs the names of the methods behind its numbers."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rl.config import load_config
from rl.eval.periodic import method_fields
from rl.workers.judge_preflight import JudgeUnreachableError, check_judge_endpoints
from rl.workers.judge_server import judge_configs
from tests.judge_server import judge_url, start_judge_server, stop_judge_server
from tests.run.test_config import _compose
from tests.train_runs import HANG_GUARD_S, REPO, train_env


@pytest.fixture(scope="module")
def judge():
    httpd = start_judge_server()
    yield httpd
    stop_judge_server(httpd)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _config(tiny_model_dir, *overrides):
    return load_config(_compose(f"model.path={tiny_model_dir}", *overrides))


def test_paper_experiment_defaults_to_the_llm_judge_and_the_cpu_one_to_the_named_proxy(tiny_model_dir):
    paper = ("+exp=helpful_only", f"reward.rm.model_path={tiny_model_dir}", "data.allow_demo=true")
    assert _config(tiny_model_dir, *paper).classifier.backend == "original"
    assert _config(tiny_model_dir, *paper, "classifier=heuristic").classifier.backend == "heuristic"
    cpu = _config(tiny_model_dir, "+exp=helpful_only_cpu", f"reward.rm.model_path={tiny_model_dir}")
    assert cpu.classifier.backend == "ngram"


def test_a_run_with_offline_methods_checks_no_judge(tiny_model_dir):
    assert check_judge_endpoints(_config(tiny_model_dir, "classifier=ngram")) == []


def test_unreachable_judge_names_the_field_and_the_ways_out(tiny_model_dir):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    cfg = _config(tiny_model_dir, "classifier=original", f"classifier.judge.base_url={url}")
    with pytest.raises(JudgeUnreachableError) as error:
        check_judge_endpoints(cfg, timeout_s=2.0)
    message = str(error.value)
    assert f"classifier.judge.base_url={url}" in message
    assert "classifier.judge.serve=true" in message and "classifier=heuristic" in message


def test_reachable_judges_pass_and_a_refused_key_is_named(tiny_model_dir, judge, monkeypatch):
    cfg = _config(tiny_model_dir, "classifier=original", f"classifier.judge.base_url={judge_url(judge)}",
                  "compliance=strongreject", f"compliance.judge.base_url={judge_url(judge)}")
    before = len(judge.prompts)
    assert check_judge_endpoints(cfg) == ["classifier.judge", "compliance.judge"]
    # One test call each, with the prompt its user sends: the AF criteria, then the StrongREJECT rubric.
    sent = judge.prompts[before:]
    assert len(sent) == 2 and "<criterion_5>" in sent[0] and "<response>" in sent[1]
    # The reward's judge is not used by this run (reward=rule): not checked even though nothing answers there.
    assert "reward.judge" in dict(judge_configs(cfg))

    monkeypatch.setenv("AFRL_TEST_KEY", "wrong-key")
    locked = _config(tiny_model_dir, "classifier=original", f"classifier.judge.base_url={judge_url(judge, 'locked')}",
                     "classifier.judge.api_key_env=AFRL_TEST_KEY")
    with pytest.raises(JudgeUnreachableError, match=r"classifier.judge: .* refused the key from \$AFRL_TEST_KEY "
                                                    r"\(HTTP 401\)"):
        check_judge_endpoints(locked)
    monkeypatch.setenv("AFRL_TEST_KEY", "right-key")
    assert check_judge_endpoints(locked) == ["classifier.judge"]


def _reward_judge(tiny_model_dir, judge, mode, *overrides):
    return _config(tiny_model_dir, "reward=judge", f"reward.judge.base_url={judge_url(judge, mode)}",
                   "reward.judge.model=tiny", "reward.judge.backoff_s=0.01", *overrides)


def test_a_chat_call_refused_names_the_endpoint_model_and_status_never_the_key(tiny_model_dir, judge, monkeypatch):
    monkeypatch.setenv("AFRL_TEST_KEY", "sk-secret-123")
    cfg = _reward_judge(tiny_model_dir, judge, "echo_key", "reward.judge.api_key_env=AFRL_TEST_KEY")
    with pytest.raises(JudgeUnreachableError) as error:
        check_judge_endpoints(cfg)
    message = str(error.value)
    assert message.startswith("reward.judge: the test call was refused, the key from $AFRL_TEST_KEY is not accepted: "
                              f"POST {judge_url(judge, 'echo_key')}/chat/completions (model 'tiny'): HTTP 401")
    assert "sk-secret-123" not in message and "***" in message  # the server echoed the key: redacted


def test_a_model_the_server_does_not_know_is_named_with_the_status(tiny_model_dir, judge):
    with pytest.raises(JudgeUnreachableError, match=r"reward.judge: the test call failed after 1 attempt\(s\) "
                                                    r"\(http_404\): POST .*/missing/v1/chat/completions \(model 'tiny'\): "
                                                    r"HTTP 404: .*does not exist"):
        check_judge_endpoints(_reward_judge(tiny_model_dir, judge, "missing"))


def test_a_reply_that_does_not_parse_stops_the_start(tiny_model_dir, judge):
    with pytest.raises(JudgeUnreachableError, match=r"reward.judge: the test call got a reply that does not parse "
                                                    r"as the StrongREJECT rubric .*I think this response is fine.*"
                                                    r"reward=rule"):
        check_judge_endpoints(_reward_judge(tiny_model_dir, judge, "garbage"))


def test_a_judge_slower_than_its_deadline_stops_the_start(tiny_model_dir, judge):
    cfg = _reward_judge(tiny_model_dir, judge, "slow", "reward.judge.timeout_s=0.3", "reward.judge.max_retries=1")
    start = time.monotonic()
    with pytest.raises(JudgeUnreachableError, match=r"failed after 2 attempt\(s\) \(timeout\): .*no complete reply "
                                                    r"within reward.judge.timeout_s=0.3s"):
        check_judge_endpoints(cfg)
    assert time.monotonic() - start < 5.0  # two 0.3 s attempts, not the server's 10 s


def test_a_served_judge_gets_the_test_call_once_its_server_is_up(tiny_model_dir, judge):
    from rl.workers.judge_preflight import check_served_judges

    cfg = _reward_judge(tiny_model_dir, judge, "garbage", "reward.judge.serve=true", "reward.judge.model=org/judge")
    assert check_judge_endpoints(cfg) == []  # served: not checked before the cluster (its server does not exist yet)
    with pytest.raises(JudgeUnreachableError, match=r"reward.judge: the test call got a reply that does not parse"):
        check_served_judges(cfg)  # base_url points at the server now (as point_judges_at_servers sets it)
    cfg.reward.judge.base_url = judge_url(judge, "good")
    assert check_served_judges(cfg) == ["reward.judge"]


@pytest.mark.heavy  # a launcher subprocess: imports and config composition take a while on 2 cores
def test_train_refuses_to_start_without_the_judge(tiny_model_dir, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    command = [sys.executable, str(REPO / "launch" / "train.py"), "+exp=helpful_only", f"model.path={tiny_model_dir}",
               f"reward.rm.model_path={tiny_model_dir}", "data.allow_demo=true", "eval.n=8",  # past the other stops
               f"classifier.judge.base_url={url}", f"hydra.run.dir={tmp_path / 'run'}", "logger.wandb=false"]
    result = subprocess.run(command, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"classifier.judge.base_url={url}: no judge answers" in output
    assert "cluster ready" not in output  # refused before any Ray actor started


def test_each_eval_names_its_methods(tiny_model_dir):
    class Backend:
        def __init__(self, name):
            self.backend = name

    cfg = _config(tiny_model_dir, "classifier=original", "classifier.judge.model=judge-8b",
                  "compliance=strongreject", "compliance.judge.model=judge-70b")
    assert method_fields("strongreject", Backend("original"), cfg) == {
        "eval/method/compliance": "strongreject", "eval/method/compliance_judge_model": "judge-70b",
        "eval/method/af": "original", "eval/method/af_judge_model": "judge-8b"}
    assert method_fields("tag_refusal", Backend("ngram"), cfg) == {
        "eval/method/compliance": "tag_refusal", "eval/method/af": "ngram (proxy)"}
    assert method_fields("tag_refusal", None, cfg)["eval/method/af"] == "none"
