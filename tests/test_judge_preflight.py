"""A run refuses to start when an LLM judge it will call does not answer (rl/judge_preflight.py), and the paper-sized
experiment asks for one by default; every eval logs the names of the methods behind its numbers."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rl.config import load_config
from rl.eval_hook import method_fields
from rl.judge_preflight import JudgeUnreachableError, check_judge_endpoints
from rl.judge_server import judge_configs
from tests.test_config import _compose
from tests.train_runs import REPO, train_env


class _ModelsHandler(BaseHTTPRequestHandler):
    """GET /v1/models like an OpenAI-compatible server; /locked/v1/models wants the key "right-key"."""

    def do_GET(self):
        locked = self.path.startswith("/locked/")
        if locked and self.headers.get("Authorization") != "Bearer right-key":
            self.send_response(401)
            self.end_headers()
            return
        if not self.path.endswith("/v1/models"):
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"object": "list", "data": [{"id": "judge", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def models_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _config(tiny_model_dir, *overrides):
    return load_config(_compose(f"model.path={tiny_model_dir}", *overrides))


def test_paper_experiment_defaults_to_the_llm_judge_and_the_cpu_one_to_the_named_proxy(tiny_model_dir):
    assert _config(tiny_model_dir, "+exp=helpful_only").classifier.backend == "original"
    assert _config(tiny_model_dir, "+exp=helpful_only", "classifier=heuristic").classifier.backend == "heuristic"
    assert _config(tiny_model_dir, "+exp=helpful_only_cpu").classifier.backend == "ngram"


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


def test_reachable_judges_pass_and_a_refused_key_is_named(tiny_model_dir, models_server, monkeypatch):
    cfg = _config(tiny_model_dir, "classifier=original", f"classifier.judge.base_url={models_server}/v1",
                  "compliance=strongreject", f"compliance.judge.base_url={models_server}/v1")
    assert check_judge_endpoints(cfg) == ["classifier.judge", "compliance.judge"]
    # The reward's judge is not used by this run (reward=rule): not checked even though nothing answers there.
    assert "reward.judge" in dict(judge_configs(cfg))

    monkeypatch.setenv("AFRL_TEST_KEY", "wrong-key")
    locked = _config(tiny_model_dir, "classifier=original", f"classifier.judge.base_url={models_server}/locked/v1",
                     "classifier.judge.api_key_env=AFRL_TEST_KEY")
    with pytest.raises(JudgeUnreachableError, match=r"classifier.judge: .* refused the key from \$AFRL_TEST_KEY"):
        check_judge_endpoints(locked)
    monkeypatch.setenv("AFRL_TEST_KEY", "right-key")
    assert check_judge_endpoints(locked) == ["classifier.judge"]


@pytest.mark.heavy  # a launcher subprocess: imports and config composition take a while on 2 cores
def test_train_refuses_to_start_without_the_judge(tiny_model_dir, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    command = [sys.executable, str(REPO / "launch" / "train.py"), "+exp=helpful_only", f"model.path={tiny_model_dir}",
               f"classifier.judge.base_url={url}", f"hydra.run.dir={tmp_path / 'run'}", "logger.wandb=false"]
    result = subprocess.run(command, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=180)
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
