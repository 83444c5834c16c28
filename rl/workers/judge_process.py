"""Start, health-check and stop the run's served judges (rl/workers/judge_server.py plans them).

Each server is a child process of its own Ray actor (`ServerProcess`), placed in a slot of the run's placement group,
so it runs on that slot's GPUs (Ray sets CUDA_VISIBLE_DEVICES for the actor and the child inherits it). The driver
waits for /health, then points every JudgeConfig that uses the server at it. Stopping is explicit (`JudgeServers.stop`:
Cluster.shutdown, and at interpreter exit, e.g. after Ctrl-C), and a server whose actor dies gets SIGTERM from the
kernel (the parent-death signal), so neither an error nor a killed actor leaves a server holding the GPUs.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rl.workers.judge_server import ServedJudge, judge_configs, server_command, server_env, with_parent_death_signal

log = logging.getLogger("afrl")
LOG_TAIL_CHARS = 4000
STOP_GRACE_S = 30.0  # SIGTERM, then SIGKILL for the server's whole process group


class JudgeServerError(RuntimeError):
    """A served judge did not come up; the message names the model, the configs using it and the server log's tail."""


class ServerProcess:
    """Owns one server process (and its process group) on the node where this actor runs."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.log_path: str | None = None

    def node_address(self, host: str | None) -> tuple[str, int]:
        """(host to bind, a free port on this node); host None = this node's IP (reachable from other nodes)."""
        import ray

        host = host or ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((host, 0))
            return host, s.getsockname()[1]

    def start(self, command: list[str], env: dict[str, str], log_path: str) -> int:
        """Start `command` in its own session (so stop() reaches its children too); returns its pid."""
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with open(log_path, "w") as log_file:
            self.proc = subprocess.Popen(with_parent_death_signal(command), env={**os.environ, **env},
                                         stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        return self.proc.pid

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def cores(self) -> int:
        return len(os.sched_getaffinity(0))

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:] if self.log_path else ""
        except OSError as error:
            return f"(server log unreadable: {error})"

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace_s`; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:  # the whole group is gone already
                pass
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        _kill_group_leftovers(self.proc.pid)
        return self.proc.returncode


def _kill_group_leftovers(pgid: int) -> None:
    """Engine processes the server left behind in its group after it exited."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class JudgeServers:
    """The run's served judges: what each serves, its actor, its base URL. `stop()` is idempotent."""

    judges: list[ServedJudge]
    actors: list
    base_urls: list[str]
    pids: list[int] = field(default_factory=list)
    stopped: bool = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        atexit.unregister(self.stop)
        import ray

        if not ray.is_initialized():  # Ray is gone, and with it the actors: the parent-death signal did the rest
            return
        try:
            ray.get([a.stop.remote() for a in self.actors], timeout=STOP_GRACE_S + 30)
            for actor in self.actors:
                ray.kill(actor)
        except Exception as error:  # noqa: BLE001 - a dead actor took its server with it (parent-death signal)
            log.warning("stopping the served judge(s): %r", error)


def start_judge_servers(judges: list[ServedJudge], slots, group, on_gpu: bool, hardware_dtype: str,
                        log_dir: Path | None, bind_local: bool) -> JudgeServers:
    """Start one ServerProcess actor per judge in its slot, launch the servers and return at once; call
    `wait_until_healthy` before the first request. `bind_local`: listen on 127.0.0.1 (a local Ray cluster) instead
    of the node's IP."""
    import ray

    from rl.workers.placement import slot_options

    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="afrl-judge-"))
    actors = [ray.remote(ServerProcess).options(**slot_options(group, slot)).remote() for slot in slots]
    servers = JudgeServers(list(judges), actors, [])
    atexit.register(servers.stop)  # Ctrl-C or an error in the driver: stop the servers before Ray goes down
    for i, (judge, actor) in enumerate(zip(judges, actors)):
        host, port = ray.get(actor.node_address.remote("127.0.0.1" if bind_local else None))
        cores = ray.get(actor.cores.remote())
        cmd = server_command(judge, host, port, on_gpu, hardware_dtype)
        log_path = log_dir / f"judge_server_{i}.log"
        servers.pids.append(ray.get(actor.start.remote(cmd, server_env(judge, on_gpu, cores), str(log_path))))
        servers.base_urls.append(f"http://{host}:{port}/v1")
        log.info("judge server %d: serving %s for %s at %s (log %s)", i, judge.model, ", ".join(judge.users),
                 servers.base_urls[-1], log_path)
    return servers


def wait_until_healthy(servers: JudgeServers, poll_s: float = 2.0) -> None:
    """Block until every server answers GET /health; raise JudgeServerError (with the log's tail) if one exits or
    misses its `serve_start_timeout_s`."""
    import ray

    start = time.monotonic()
    waiting = list(range(len(servers.judges)))
    while waiting:
        for i in list(waiting):
            judge, actor, url = servers.judges[i], servers.actors[i], servers.base_urls[i]
            if _healthy(url):
                waiting.remove(i)
                log.info("judge server %d healthy after %.0fs", i, time.monotonic() - start)
                continue
            code = ray.get(actor.returncode.remote())
            late = time.monotonic() - start > judge.start_timeout_s
            if code is not None or late:
                why = (f"exited with code {code}" if code is not None else
                       f"did not answer /health within {judge.start_timeout_s:.0f}s (judge.serve_start_timeout_s)")
                tail = ray.get(actor.log_tail.remote())
                raise JudgeServerError(f"served judge {judge.model!r} ({', '.join(judge.users)}) {why}; "
                                       f"last lines of its log:\n{tail}")
        if waiting:
            time.sleep(poll_s)


def _healthy(base_url: str) -> bool:
    root = base_url.removesuffix("/v1")
    try:
        return httpx.get(f"{root}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def point_judges_at_servers(cfg, servers: JudgeServers) -> None:
    """Set base_url of every JudgeConfig that uses a served judge (before any JudgeClient is built)."""
    url_of = {user: url for judge, url in zip(servers.judges, servers.base_urls) for user in judge.users}
    for path, judge in judge_configs(cfg):
        if path in url_of:
            judge.base_url = url_of[path]
