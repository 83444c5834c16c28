"""Runs that join an existing Ray cluster (ray.address): the runtime_env every actor gets (rl/workers/runtime_env.py)
and the rendezvous at the node of rank 0 (rl/workers/rendezvous.py), on a two-node Ray cluster on this machine
(ray.cluster_utils: two raylets, so two node ids, on one host)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rl.workers.placement import PlacementPlan, Slot, create_placement_group
from rl.workers.rendezvous import LOOPBACK, rendezvous
from rl.workers.runtime_env import REPO_ROOT, UPLOAD_EXCLUDES, absolute_if_local, cluster_runtime_env, forwarded_env
from tests.train_runs import HANG_GUARD_S

ENVIRON = {
    "WANDB_MODE": "offline", "HF_HOME": "/shared/hf", "AFRL_CACHE": "/shared/afrl", "VLLM_CPU_KVCACHE_SPACE": "4",
    "NCCL_DEBUG": "INFO", "TOKENIZERS_PARALLELISM": "false",
    "HF_TOKEN": "hf_secret", "AFRL_JUDGE_API_KEY": "sk-secret", "VLLM_API_KEY": "sk-secret2", "WANDB_API_KEY": "w",
    "CUDA_VISIBLE_DEVICES": "0", "PATH": "/usr/bin", "HOME": "/home/me", "OPENAI_API_KEY": "sk-openai",
}


def test_a_local_cluster_gets_no_runtime_env():
    assert cluster_runtime_env(None, environ=ENVIRON) is None


def test_on_a_cluster_the_repo_travels_and_the_run_env_but_no_secret_unless_named():
    env = cluster_runtime_env("10.0.0.1:6379", environ=ENVIRON)
    assert env["working_dir"] == str(REPO_ROOT) and (REPO_ROOT / "rl" / "workers" / "runtime_env.py").is_file()
    assert {".git", ".venv", "outputs", "runs", "wandb"} <= set(env["excludes"]) and env["excludes"] == UPLOAD_EXCLUDES
    assert env["env_vars"] == {"AFRL_CACHE": "/shared/afrl", "HF_HOME": "/shared/hf", "NCCL_DEBUG": "INFO",
                               "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "4",
                               "WANDB_MODE": "offline"}
    named = cluster_runtime_env("auto", ["OPENAI_API_KEY"], environ=ENVIRON)["env_vars"]
    assert named["OPENAI_API_KEY"] == "sk-openai" and "HF_TOKEN" not in named  # ray.forward_env: knowingly
    with pytest.raises(ValueError, match=r"ray.forward_env: JUDGE_KEY not set in the driver's environment"):
        cluster_runtime_env("auto", ["JUDGE_KEY"], environ=ENVIRON)
    assert forwarded_env({"CUDA_VISIBLE_DEVICES": "1"}, ["CUDA_VISIBLE_DEVICES"]) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_local_paths_become_absolute_for_workers_whose_cwd_is_the_uploaded_repo(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert absolute_if_local("models/m") == str(tmp_path / "models" / "m")
    assert absolute_if_local("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert absolute_if_local("~/x") == os.path.expanduser("~/x")


@pytest.fixture(scope="module")
def two_node_ray():
    """A head node (1 CPU) and a second node (2 CPUs) holding the custom resource `second_node`; the driver joins
    through the cluster address with the run's runtime_env, as a run with ray.address does."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = cluster.add_node(num_cpus=2, resources={"second_node": 2})
    cluster.wait_for_nodes()
    environ = {**os.environ, "AFRL_MULTINODE_MARK": "forwarded"}
    ray.init(address=cluster.address, runtime_env=cluster_runtime_env(cluster.address, environ=environ),
             configure_logging=False)
    yield ray, second.node_id, cluster.address
    ray.shutdown()
    cluster.shutdown()


def _plan() -> PlacementPlan:
    """Bundle 0 on either node; bundle 1 only fits the second node (it reserves `second_node`): rank 0 goes there."""
    bundles = ({"CPU": 1.0}, {"CPU": 1.0, "second_node": 1.0})
    return PlacementPlan("split", bundles, (), (Slot(1, 1.0, 0.0), Slot(0, 1.0, 0.0)), None, None, False)


def test_the_rendezvous_is_found_on_the_node_of_rank_0_and_the_ranks_meet_there(two_node_ray):
    ray, second_node, _ = two_node_ray
    plan = _plan()
    group = create_placement_group(plan, timeout_s=HANG_GUARD_S)
    try:
        meet = rendezvous(group, plan.trainers[0], on_cluster=True, timeout_s=HANG_GUARD_S)
        assert meet.node_id == second_node and meet.node_id != ray.get_runtime_context().get_node_id()
        assert meet.address == ray.util.get_node_ip_address() and 1024 <= meet.port < 65536  # one host: one IP

        @ray.remote
        def join(rank: int, address: str, port: int) -> tuple[float, str]:
            import torch
            import torch.distributed as dist

            dist.init_process_group("gloo", init_method=f"tcp://{address}:{port}", rank=rank, world_size=2)
            value = torch.tensor([rank + 1.0])
            dist.all_reduce(value)
            dist.destroy_process_group()
            return float(value), ray.get_runtime_context().get_node_id()

        from rl.workers.placement import slot_options

        results = ray.get([join.options(**slot_options(group, slot)).remote(rank, meet.address, meet.port)
                           for rank, slot in enumerate(plan.trainers)], timeout=HANG_GUARD_S)
        assert [total for total, _ in results] == [3.0, 3.0]
        assert results[0][1] == second_node  # rank 0 ran where the rendezvous was found
    finally:
        ray.util.remove_placement_group(group)
    assert rendezvous(None, None, on_cluster=False).address == LOOPBACK  # local: no probe, loopback as before


def test_every_actor_runs_the_uploaded_repo_with_the_run_env_merged_with_its_own(two_node_ray):
    ray, _, _ = two_node_ray

    @ray.remote(num_cpus=0, resources={"second_node": 0.5}, runtime_env={"env_vars": {"GLIBC_TUNABLES": "x=1"}})
    class Worker:
        def where(self):
            import rl.workers.runtime_env as module

            return (os.getcwd(), module.__file__, os.environ.get("AFRL_MULTINODE_MARK"),
                    os.environ.get("GLIBC_TUNABLES"), sorted(os.listdir(".")))

    cwd, module_file, mark, tunables, listing = ray.get(Worker.remote().where.remote(), timeout=HANG_GUARD_S)
    assert Path(cwd) != REPO_ROOT and Path(module_file).is_relative_to(cwd)  # the unpacked copy, not this checkout
    assert mark == "forwarded" and tunables == "x=1"  # the job's env_vars and the actor's own, merged
    assert {"rl", "rollouts", "rewards", "launch", "conf"} <= set(listing)
    assert not {".git", ".venv", "outputs"} & set(listing)


def test_the_slurm_script_waits_until_every_node_has_joined(two_node_ray):
    """launch/slurm_ray_cluster.sh runs `python -m rl.run.slurm_ray` before the driver: 0 once N nodes are alive."""
    import subprocess
    import sys

    _, _, address = two_node_ray
    command = [sys.executable, "-m", "rl.run.slurm_ray", "--address", address, "--timeout-s"]
    joined = subprocess.run([*command, "60", "--nodes", "2"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert joined.returncode == 0 and f"Ray cluster at {address}: 2 nodes" in joined.stdout, joined.stderr
    missing = subprocess.run([*command, "1", "--nodes", "3"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=HANG_GUARD_S)
    assert missing.returncode == 1 and f"Ray cluster at {address}: 2 of 3 nodes joined after 1s" in missing.stderr
