"""launch/slurm_ray_cluster.sh without Slurm: its syntax (bash -n, shellcheck where installed), then whole runs with
the Slurm commands and Python replaced by stand-ins that log their calls (tests/slurm_stubs.py): which node gets the
Ray head and which the workers, the driver's command line, signals passed to the driver, exit status, clean-up."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm_stubs import write_stubs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "slurm_ray_cluster.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    result = subprocess.run(["shellcheck", "-x", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.fixture
def job_env(tmp_path) -> dict:
    """A 3-node job's environment, as sbatch gives it, with the stand-ins first on PATH."""
    stubs = write_stubs(tmp_path / "bin")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "AFRL_"))}
    return {**env, "PATH": f"{stubs}:{env['PATH']}", "STUB_LOG": str(tmp_path / "calls.log"),
            "SLURM_JOB_NODELIST": "node-[a-c]", "SLURM_CPUS_PER_TASK": "4", "AFRL_PYTHON": str(stubs / "python"),
            "AFRL_RAY_HEAD_WAIT_S": "0"}


def _calls(env: dict) -> list[str]:
    path = Path(env["STUB_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(env: dict, text: str, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in _calls(env)):
        assert time.monotonic() < deadline, f"no call with {text!r} in:\n" + "\n".join(_calls(env))
        time.sleep(0.1)
    return _calls(env)


def _ray_nodes(calls: list[str]) -> dict[str, int]:
    """The pid of each `ray start` stand-in, by its role (head, or the --address it joins)."""
    starts = [line.split() for line in calls if line.startswith("python") and "ray.scripts.scripts start" in line]
    return {("head" if "--head" in words else f"worker{i}"): int(words[1]) for i, words in enumerate(starts)}


def test_head_on_the_first_node_workers_on_the_others_then_the_driver_which_gets_the_warning_signal(job_env):
    job = subprocess.Popen(["bash", str(SCRIPT), "+exp=smoke", "total_steps=2"], env=job_env, cwd="/",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    calls = _wait_for(job_env, "driver-ready")
    srun = [line.split(" ", 2)[2] for line in calls if line.startswith("srun")]
    assert srun[0] == "--nodes=1 --ntasks=1 --overlap -w node-a hostname --ip-address"
    ray_start = ["--nodes=1 --ntasks=1 --overlap -w {} bash -c trap \"\" USR1 USR2; exec \"$@\" ray-start "
                 f"{job_env['AFRL_PYTHON']} -m ray.scripts.scripts start {{}} --num-cpus=4 --block"]
    assert sorted(srun[1:]) == [  # the steps start in the background: their calls may be logged in any order
        ray_start[0].format("node-a", "--head --node-ip-address=10.1.2.3 --port=6379 --include-dashboard=false"),
        *(ray_start[0].format(node, "--address=10.1.2.3:6379") for node in ("node-b", "node-c"))]
    assert f"-m rl.run.slurm_ray --address 10.1.2.3:6379 --nodes 3 --timeout-s 600" in "\n".join(calls)
    driver = next(line for line in calls if "launch/train.py" in line).split(" ", 2)[2]
    assert driver == f"-u {REPO}/launch/train.py ray.address=10.1.2.3:6379 +exp=smoke total_steps=2"  # found from /
    nodes = _ray_nodes(calls)
    assert len(nodes) == 3, "\n".join(calls)
    os.kill(nodes["head"], signal.SIGUSR2)  # the Ray processes ignore Slurm's warning: only the driver acts on it
    job.send_signal(signal.SIGUSR2)  # what `#SBATCH --signal=B:USR2@600` sends the batch shell
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 75, output  # the driver's status (preempted: checkpointed, relaunch to continue)
    calls = _calls(job_env)
    assert "driver-got USR2" in calls
    stopped = {int(line.split()[1]) for line in calls if line.startswith("ray-stopped")}
    assert stopped == set(nodes.values())  # every node's `ray start` was stopped when the job ended


def test_the_drivers_exit_status_is_the_jobs(job_env):
    result = subprocess.run(["bash", str(SCRIPT), "+exp=smoke"], env={**job_env, "STUB_DRIVER_EXIT": "3"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert len([line for line in _calls(job_env) if line.startswith("ray-stopped")]) == 3, "\n".join(_calls(job_env))


def test_outside_a_slurm_job_it_says_how_to_submit(job_env):
    env = {key: value for key, value in job_env.items() if key != "SLURM_JOB_NODELIST"}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "sbatch --nodes=N launch/slurm_ray_cluster.sh" in result.stderr
    assert not _calls(job_env)


def test_sourced_with_start_only_it_starts_the_cluster_and_exports_its_address(job_env):
    """conf/launcher/slurm_multinode.yaml's setup line: the cluster starts, the job's own command follows."""
    shell = (f'source {SCRIPT} --start-only || exit 1; echo "address=$AFRL_RAY_ADDRESS repo=$AFRL_REPO"; '
             'kill "${AFRL_RAY_PIDS[@]}"; wait')
    result = subprocess.run(["bash", "-c", shell], env=job_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"address=10.1.2.3:6379 repo={REPO}" in result.stdout
    assert len([line for line in _calls(job_env) if line.startswith("ray-stopped")]) == 3, "\n".join(_calls(job_env))
