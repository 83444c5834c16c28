"""Ray placement (rl/workers/placement.py): the plan of bundles and slots per layout, and real Ray actors landing in
them."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rl.workers.placement import PlacementPlan, Slot, create_placement_group, plan_placement, slot_options
from tests.train_runs import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[2]


def test_split_gives_every_actor_its_own_bundle_with_its_gpus():
    plan = plan_placement("split", n_engines=2, world_size=2, with_critic=True, with_reward_model=True, use_gpus=True,
                          engine_gpus=1, trainer_gpus=1, critic_gpus=0.5, reward_model_gpus=0.25)
    assert plan.bundles == ({"CPU": 1, "GPU": 1},) * 4 + ({"CPU": 1, "GPU": 0.5}, {"CPU": 1, "GPU": 0.25})
    assert [s.bundle for s in plan.engines] == [0, 1] and [s.bundle for s in plan.trainers] == [2, 3]
    assert plan.critic == Slot(4, 1.0, 0.5) and plan.reward_model == Slot(5, 1.0, 0.25)
    assert plan.total_gpus == 4.75 and not plan.engines_sleep


def test_colocated_shares_one_gpu_per_engine_trainer_pair_and_sleeps_vllm():
    plan = plan_placement("colocated", n_engines=2, world_size=2, with_critic=True, with_reward_model=False,
                          use_gpus=True)
    # GPU 0: engine 0, rank 0, critic (a third each); GPU 1: engine 1, rank 1 (half each).
    assert plan.bundles == ({"CPU": 3, "GPU": 1}, {"CPU": 2, "GPU": 1})
    assert plan.engines == (Slot(0, 1.0, 1 / 3), Slot(1, 1.0, 0.5))
    assert plan.trainers == (Slot(0, 1.0, 1 / 3), Slot(1, 1.0, 0.5))
    assert plan.critic == Slot(0, 1.0, 1 / 3) and plan.reward_model is None
    assert plan.engines_sleep and plan.total_gpus == 2


def test_colocated_with_more_ranks_than_engines_and_sleep_off():
    plan = plan_placement("colocated", n_engines=1, world_size=4, with_critic=False, with_reward_model=True,
                          use_gpus=True, sleep="false")
    assert len(plan.bundles) == 4 and plan.bundles[0] == {"CPU": 3, "GPU": 1}
    assert plan.engines == (Slot(0, 1.0, 1 / 3),) and plan.reward_model == Slot(0, 1.0, 1 / 3)
    assert [s.bundle for s in plan.trainers] == [0, 1, 2, 3] and plan.trainers[3].num_gpus == 1.0
    assert not plan.engines_sleep


def test_on_cpu_the_same_layout_holds_logical_cpus_only():
    for mode in ("split", "colocated"):
        plan = plan_placement(mode, n_engines=2, world_size=2, with_critic=False, with_reward_model=True,
                              use_gpus=False)
        assert all("GPU" not in b for b in plan.bundles) and plan.total_cpus == 5
        assert all(s.num_gpus == 0 for s in plan.engines + plan.trainers) and not plan.engines_sleep


def test_bad_placement_settings_name_the_field():
    with pytest.raises(ValueError, match="resources.placement='spread'"):
        plan_placement("spread", 1, 1, False, False, use_gpus=False)
    with pytest.raises(ValueError, match="resources.engine_sleep=true: vLLM sleep mode needs CUDA"):
        plan_placement("colocated", 1, 1, False, False, use_gpus=False, sleep="true")
    with pytest.raises(ValueError, match="resources.engine_sleep='maybe'"):
        plan_placement("split", 1, 1, False, False, use_gpus=False, sleep="maybe")


def test_actors_start_in_their_slots_of_one_placement_group(local_ray):
    ray = local_ray

    @ray.remote
    class Probe:
        def placement(self):
            context = ray.get_runtime_context()
            return context.get_placement_group_id(), context.get_assigned_resources()

    plan = plan_placement("colocated", n_engines=2, world_size=2, with_critic=False, with_reward_model=False,
                          use_gpus=False)
    group = create_placement_group(plan, timeout_s=HANG_GUARD_S)
    try:
        table = ray.util.placement_group_table(group)
        assert table["state"] == "CREATED" and list(table["bundles"].values()) == [{"CPU": 2.0}, {"CPU": 2.0}]
        probes = [Probe.options(**slot_options(group, slot)).remote() for slot in plan.engines + plan.trainers]
        for group_id, resources in ray.get([p.placement.remote() for p in probes], timeout=60):
            assert group_id == group.id.hex() and resources == {"CPU": 1.0}
        # The group is full: a fifth actor in bundle 0 cannot be scheduled there.
        extra = Probe.options(**slot_options(group, Slot(0, 1.0, 0.0))).remote()
        ready, _ = ray.wait([extra.placement.remote()], timeout=3)
        assert not ready
    finally:
        ray.util.remove_placement_group(group)


def test_an_unplaceable_plan_is_a_clear_error_not_a_hang(local_ray):
    plan = PlacementPlan("split", ({"CPU": 1.0, "GPU": 1.0},), (Slot(0, 1.0, 1.0),), (), None, None, False)
    with pytest.raises(RuntimeError, match=r"could not reserve 1 bundle\(s\) needing 1 CPU\(s\) and 1 GPU\(s\) in 2s; "
                                           r"the cluster has 4 CPU\(s\) and 0 GPU\(s\)"):
        create_placement_group(plan, timeout_s=2)


def test_bench_layouts_reads_ranks_engines_and_placement():
    from launch.bench_layouts import layout_overrides

    assert layout_overrides("2x2") == ["trainer.world_size=2", "rollout.n_engines=2", "resources.placement=split"]
    assert layout_overrides("1x2:colocated")[2] == "resources.placement=colocated"
    with pytest.raises(SystemExit, match="RANKSxENGINES"):
        layout_overrides("two")


def test_colocated_engines_sleep_for_the_update_and_wake_before_the_weight_sync(local_ray):
    """The order the loop relies on (vLLM's sleep itself needs CUDA, so the engines here are recording actors):
    sleep_engines() puts every engine to sleep; sync_weights() wakes each one before loading the new weights."""
    from rl.workers.cluster import Cluster

    ray = local_ray

    @ray.remote(num_cpus=0)
    class RecordingEngine:
        def __init__(self):
            self.calls = []

        def sleep(self):
            self.calls.append("sleep")

        def wake_up(self):
            self.calls.append("wake_up")

        def load_weights(self, weights):
            self.calls.append(f"load_weights:{len(weights)}")

        def history(self):
            return self.calls

    @ray.remote(num_cpus=0)
    class WeightSource:
        def get_weights(self):
            return [("w", [1.0])]

    engines = [RecordingEngine.remote() for _ in range(2)]
    cluster = Cluster(engines, [WeightSource.remote()], 0.0, step_timeout_s=60, engines_sleep=True)
    cluster.sleep_engines()
    cluster.sync_weights(timeout_s=60)
    assert ray.get([e.history.remote() for e in engines]) == [["sleep", "wake_up", "load_weights:1"]] * 2
    awake = Cluster([RecordingEngine.remote()], [WeightSource.remote()], 0.0, step_timeout_s=60, engines_sleep=False)
    awake.sleep_engines()
    awake.sync_weights(timeout_s=60)
    assert ray.get(awake.engines[0].history.remote()) == ["load_weights:1"]


def test_engine_cores_split_the_node_between_engines():
    from rollouts.engine import engine_cores

    assert engine_cores([1, 0], "0/1") == [0, 1]
    assert engine_cores([0, 1, 2, 3], "0/2") == [0, 1] and engine_cores([0, 1, 2, 3], "1/2") == [2, 3]
    assert engine_cores([0, 1], "1/3") == [1] and engine_cores([0, 1], "2/3") == [0]  # more engines than cores: wrap
    with pytest.raises(ValueError, match="share='2/2'"):
        engine_cores([0, 1], "2/2")


def test_an_engine_actor_gets_its_cores_despite_omp_num_threads_1():
    """Ray starts 1-CPU actors with OMP_NUM_THREADS=1; the engine sets its thread count before vLLM locks it."""
    import subprocess
    import sys

    code = ("import os, torch; from rollouts.engine import use_cores; use_cores('0/1'); "
            "print(torch.get_num_threads(), len(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split()
    assert out[0] == out[1], out


def test_engine_block_size_is_32_on_cpu_unless_set():
    from rl.workers.cluster import engine_kwargs
    from rl.config import TrainConfig
    from rl.workers.placement import Hardware
    from rollouts.engine import CPU_BLOCK_SIZE, cpu_engine_kwargs

    cfg = TrainConfig()
    assert "block_size" not in engine_kwargs(cfg, Hardware("cuda", "bfloat16"), 0)  # GPU: vLLM's own default
    assert cpu_engine_kwargs(engine_kwargs(cfg, Hardware("cpu", "float32"), 0))["block_size"] == CPU_BLOCK_SIZE == 32
    cfg.rollout.block_size = 64
    assert cpu_engine_kwargs(engine_kwargs(cfg, Hardware("cpu", "float32"), 0))["block_size"] == 64
    assert cpu_engine_kwargs({"max_model_len": 8192})["max_num_batched_tokens"] == 8192  # whole prefills still
    with pytest.raises(ValueError, match=r"rollout\.block_size: .*multiples of 32 tokens, got 16"):
        cpu_engine_kwargs({"block_size": 16})


def _learner_cfg(keep_freed_memory: bool = True):
    from rl.config import TrainConfig

    cfg = TrainConfig()
    cfg.trainer.keep_freed_memory = keep_freed_memory
    return cfg


def test_learner_options_set_glibc_tunables_on_cpu_only(monkeypatch):
    from rl.workers.cluster import KEEP_FREED_MEMORY, learner_options
    from rl.workers.placement import Hardware

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    cpu, gpu = Hardware("cpu", "float32"), Hardware("cuda", "bfloat16")
    assert learner_options(_learner_cfg(), cpu) == {"runtime_env": {"env_vars": {"GLIBC_TUNABLES": KEEP_FREED_MEMORY}}}
    assert learner_options(_learner_cfg(), gpu) == {}
    assert learner_options(_learner_cfg(keep_freed_memory=False), cpu) == {}
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")  # the user's own tunables are kept, first
    env = learner_options(_learner_cfg(), cpu)["runtime_env"]["env_vars"]
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{KEEP_FREED_MEMORY}"


def test_a_learner_actor_keeps_a_freed_large_buffer_in_its_heap(local_ray):
    """The tunables reach the actor's process at start-up: a 256 MB buffer comes from the heap (no mmap) and stays
    there once freed; an actor without them maps it and hands it back."""
    from rl.workers.cluster import learner_options
    from rl.workers.placement import Hardware

    ray = local_ray

    @ray.remote(num_cpus=0)
    class HeapProbe:
        def heap_mb_after_freeing_a_buffer(self) -> float:
            import torch

            buffer = torch.ones(64 * 2**20)  # 256 MB of float32, touched
            del buffer
            for line in Path("/proc/self/maps").read_text().splitlines():
                if line.endswith("[heap]"):
                    begin, end = (int(x, 16) for x in line.split()[0].split("-"))
                    return (end - begin) / 2**20
            return 0.0

    options = learner_options(_learner_cfg(), Hardware("cpu", "float32"))
    keeping, default = HeapProbe.options(**options).remote(), HeapProbe.remote()
    kept, returned = ray.get([keeping.heap_mb_after_freeing_a_buffer.remote(),
                              default.heap_mb_after_freeing_a_buffer.remote()], timeout=120)
    assert kept >= 256 > returned, (kept, returned)


def test_the_readiness_wait_names_the_actor_that_is_late_and_the_one_that_failed(local_ray):
    ray = local_ray
    from rl.workers.placement import wait_until_ready

    @ray.remote(num_cpus=0)
    class Role:
        def __init__(self, delay_s: float, fail: bool = False):
            self.delay_s, self.fail = delay_s, fail

        def ready(self) -> bool:
            time.sleep(self.delay_s)
            if self.fail:
                raise RuntimeError("model folder has no config.json")
            return True

    fast, slow = Role.remote(0.0), Role.remote(60.0)
    ray.get(fast.ready.remote(), timeout=HANG_GUARD_S)  # started before the 5 s wait, however loaded the machine
    with pytest.raises(TimeoutError, match=r"1 of 2 not ready after 5s: trainer rank 0"):
        wait_until_ready({"rollout engine 0": fast, "trainer rank 0": slow}, timeout_s=5)
    broken = Role.remote(0.0, fail=True)
    with pytest.raises(ray.exceptions.RayTaskError, match="no config.json"):
        wait_until_ready({"reward model": broken}, timeout_s=30)


# ---- tensor-parallel engines -----------------------------------------------------------------------------------------
def test_split_gives_a_tensor_parallel_engine_one_single_gpu_bundle_per_worker():
    plan = plan_placement("split", n_engines=2, world_size=2, with_critic=False, with_reward_model=False,
                          use_gpus=True, engine_gpus=2, tensor_parallel_size=2)
    assert plan.bundles == ({"CPU": 1, "GPU": 1},) * 6  # vLLM's Ray executor refuses bundles of more than one GPU
    assert plan.engines == (Slot(0, 1.0, 0.0, (0, 1), 1.0), Slot(2, 1.0, 0.0, (2, 3), 1.0))
    assert [s.bundle for s in plan.trainers] == [4, 5] and plan.total_gpus == 2 * 2 + 2


def test_engine_gpus_must_match_the_tensor_parallel_size():
    with pytest.raises(ValueError, match=r"resources.engine_gpus=1 with rollout.tensor_parallel_size=4: .*"
                                         r"set resources.engine_gpus=4"):
        plan_placement("split", 1, 1, False, False, use_gpus=True, tensor_parallel_size=4)
    with pytest.raises(ValueError, match=r"resources.engine_gpus=2 with rollout.tensor_parallel_size=1: vLLM would "
                                         r"use one of them; set rollout.tensor_parallel_size=2"):
        plan_placement("split", 1, 1, False, False, use_gpus=True, engine_gpus=2)
    with pytest.raises(ValueError, match=r"resources.critic_gpus=2 with rollout.tensor_parallel_size=2"):
        plan_placement("split", 1, 1, True, False, use_gpus=True, engine_gpus=2, critic_gpus=2,
                       tensor_parallel_size=2)


def test_tensor_parallel_engines_are_refused_on_cpu():
    with pytest.raises(ValueError, match=r"rollout.tensor_parallel_size=2 needs GPUs: .* vLLM-CPU does not have"):
        plan_placement("split", 1, 1, False, False, use_gpus=False, engine_gpus=2, tensor_parallel_size=2)


def test_colocated_tensor_parallel_workers_share_the_trainer_gpus():
    plan = plan_placement("colocated", n_engines=1, world_size=2, with_critic=True, with_reward_model=False,
                          use_gpus=True, tensor_parallel_size=2)
    # GPU 0: rank 0, critic, engine worker 0 (a third each; the engine actor holds a CPU there, no GPU);
    # GPU 1: rank 1 and worker 1 (half each). One share for all workers: the smaller.
    assert plan.bundles == ({"CPU": 3, "GPU": 1}, {"CPU": 1, "GPU": 1})
    assert plan.engines == (Slot(0, 1.0, 0.0, (0, 1), 1 / 3),)
    assert plan.trainers == (Slot(0, 1.0, 1 / 3), Slot(1, 1.0, 0.5)) and plan.critic == Slot(0, 1.0, 1 / 3)
    wide = plan_placement("colocated", n_engines=2, world_size=2, with_critic=False, with_reward_model=False,
                          use_gpus=True, tensor_parallel_size=2)
    # GPUs 2-3 hold engine 1's workers only (and its actor's CPU on the first)
    assert wide.total_gpus == 4 and wide.bundles[2:] == ({"CPU": 1, "GPU": 1}, {"GPU": 1})
    assert wide.engines[1] == Slot(2, 1.0, 0.0, (2, 3), 1.0)


def test_a_spread_engine_is_regrouped_by_node_in_split_and_refused_in_colocated():
    from rl.workers.placement import engines_on_one_node_each

    plan = plan_placement("split", n_engines=2, world_size=1, with_critic=False, with_reward_model=False,
                          use_gpus=True, engine_gpus=2, tensor_parallel_size=2)
    nodes = {0: "a", 1: "b", 2: "a", 3: "b", 4: "a"}  # PACK alternated the engine bundles over two nodes
    regrouped = engines_on_one_node_each(plan, nodes)
    assert [e.worker_bundles for e in regrouped.engines] == [(0, 2), (1, 3)]
    assert [e.bundle for e in regrouped.engines] == [0, 1]
    colocated = plan_placement("colocated", n_engines=1, world_size=2, with_critic=False, with_reward_model=False,
                               use_gpus=True, tensor_parallel_size=2)
    with pytest.raises(RuntimeError, match=r"rollout engine 0: its tensor-parallel bundles \[0, 1\] landed on 2 nodes"):
        engines_on_one_node_each(colocated, {0: "a", 1: "b"})


def test_tensor_parallel_engines_run_vllms_ray_executor_on_their_bundles():
    from rollouts.engine import tensor_parallel_args

    assert tensor_parallel_args(1, (), 0.0) == ({}, {})
    kwargs, env = tensor_parallel_args(2, (4, 5), 0.5)
    assert kwargs == {"tensor_parallel_size": 2, "distributed_executor_backend": "ray"}
    assert env == {"VLLM_RAY_BUNDLE_INDICES": "4,5", "VLLM_RAY_PER_WORKER_GPUS": "0.5"}


def test_an_engine_slot_with_workers_keeps_what_it_starts_in_its_placement_group(local_ray):
    """As OpenRLHF's engines do, a tensor-parallel engine's slot captures its child tasks, so what vLLM starts from it
    stays in the group; an ordinary slot does not. Logical CPUs stand in for the GPUs here."""
    ray = local_ray

    @ray.remote(num_cpus=0)
    class Child:
        def group(self):
            group = ray.util.get_current_placement_group()
            return group.id.hex() if group else None

    @ray.remote
    class Engine:
        def child_group(self):
            return ray.get(Child.remote().group.remote())

    plan = PlacementPlan("split", ({"CPU": 1.0}, {"CPU": 1.0}), (Slot(0, 1.0, 0.0, (0, 1), 1.0),), (), None, None,
                         False)
    group = create_placement_group(plan, timeout_s=HANG_GUARD_S)
    try:
        engine = Engine.options(**slot_options(group, plan.engines[0])).remote()
        assert ray.get(engine.child_group.remote(), timeout=60) == group.id.hex()
        plain = Engine.options(**slot_options(group, Slot(1, 1.0, 0.0))).remote()
        assert ray.get(plain.child_group.remote(), timeout=60) is None
    finally:
        ray.util.remove_placement_group(group)


def test_the_config_check_names_engine_gpus_when_it_disagrees_with_the_tensor_parallel_size(tiny_model_dir):
    from hydra import compose, initialize_config_dir

    from rl.config import load_config, register_schema
    from rollouts.config_check import ConfigError

    register_schema()

    def load(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return load_config(compose(config_name="config", overrides=[f"model.path={tiny_model_dir}", *overrides]))

    with pytest.raises(ConfigError, match=r"resources.engine_gpus=1 with rollout.tensor_parallel_size=2"):
        load("rollout.tensor_parallel_size=2")
    assert load("rollout.tensor_parallel_size=2", "resources.engine_gpus=2").rollout.tensor_parallel_size == 2
    # colocated engines share the trainers' GPUs: resources.engine_gpus does not apply
    assert load("rollout.tensor_parallel_size=2", "resources.placement=colocated").resources.engine_gpus == 1
