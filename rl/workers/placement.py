"""Where each Ray role runs: one placement group, reserved before any actor starts, and a slot in it per actor.

`resources.placement`:
- split: every engine, trainer rank, critic and reward model gets a bundle of its own (`resources.*_gpus` GPUs each),
  so generation and training sit on separate cards (OpenRLHF's default layout).
- colocated: bundle i is one whole GPU shared by engine i and trainer rank i (the critic and the reward model join
  bundle 0); vLLM sleeps while the trainer works, giving its weights and KV cache memory back (verl's hybrid engine).
In both, a served LLM judge (`judge.serve=true`, rl/workers/judge_server.py) gets a bundle of its own with its
`serve_gpus`.

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
from dataclasses import dataclass

log = logging.getLogger("afrl")

# ---- the plan and the placement group --------------------------------------------------------------------------------
PLACEMENTS = ("split", "colocated")


@dataclass(frozen=True)
class Slot:
    """One actor's place: its bundle and the resources it asks for inside that bundle."""

    bundle: int
    num_cpus: float
    num_gpus: float


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
                   judge_gpus: tuple[float, ...] = ()) -> PlacementPlan:
    """The bundles and each actor's slot. `with_critic`: the critic's ranks (True = 1, False = none). `sleep`: auto
    (colocated on GPU) | true | false. `judge_gpus`: GPUs of each served judge."""
    if mode not in PLACEMENTS:
        raise ValueError(f"resources.placement={mode!r}: expected one of {', '.join(PLACEMENTS)}")
    if sleep not in ("auto", "true", "false"):
        raise ValueError(f"resources.engine_sleep={sleep!r}: expected auto | true | false")
    if sleep == "true" and not (use_gpus and mode == "colocated"):
        raise ValueError("resources.engine_sleep=true: vLLM sleep mode needs CUDA and resources.placement=colocated "
                         "(on CPU, or on separate GPUs, the engines free nothing the trainer could use)")
    engines_sleep = use_gpus and mode == "colocated" and sleep != "false"
    if mode == "split":
        plan = _split(n_engines, world_size, with_critic, with_reward_model, use_gpus, engine_gpus, trainer_gpus,
                      critic_gpus, reward_model_gpus)
    else:
        plan = _colocated(n_engines, world_size, with_critic, with_reward_model, use_gpus, engines_sleep)
    return _with_judges(plan, judge_gpus, use_gpus)


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
           reward_model_gpus) -> PlacementPlan:
    bundles: list[dict] = []

    def own_bundle(gpus: float) -> Slot:
        gpus = gpus if use_gpus else 0.0
        bundles.append({"CPU": 1.0, **({"GPU": gpus} if gpus else {})})
        return Slot(len(bundles) - 1, 1.0, gpus)

    engines = tuple(own_bundle(engine_gpus) for _ in range(n_engines))
    trainers = tuple(own_bundle(trainer_gpus) for _ in range(world_size))
    critics = tuple(own_bundle(critic_gpus) for _ in range(int(with_critic)))
    reward_model = own_bundle(reward_model_gpus) if with_reward_model else None
    return PlacementPlan("split", tuple(bundles), engines, trainers, critics, reward_model, engines_sleep=False)


def _colocated(n_engines, world_size, with_critic, with_reward_model, use_gpus, engines_sleep) -> PlacementPlan:
    n_bundles = max(n_engines, world_size)
    members = [0] * n_bundles  # actors per bundle
    roles = [("engine", i % n_bundles) for i in range(n_engines)] + [("trainer", i) for i in range(world_size)]
    # critic rank i joins pair i (rank 0 with pair 0, as the reward model)
    roles += [("critic", i % n_bundles) for i in range(int(with_critic))] + [("reward_model", 0)] * with_reward_model
    for _, bundle in roles:
        members[bundle] += 1
    # Ray needs the GPU shares in a bundle to add up to at most its one GPU; memory is what vLLM's
    # gpu_memory_utilization and the sleep decide, the share only lets the actors land on the same card.
    slots = [(role, Slot(b, 1.0, 1.0 / members[b] if use_gpus else 0.0)) for role, b in roles]
    bundles = tuple({"CPU": float(m), **({"GPU": 1.0} if use_gpus else {})} for m in members)

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
    """Ray `.options(...)` that put an actor in its slot."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {
        "num_cpus": slot.num_cpus, "num_gpus": slot.num_gpus,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=slot.bundle,
        ),
    }



# ---- waiting for actors ----------------------------------------------------------------------------------------------
def wait_until_ready(named: dict[str, object], timeout_s: float) -> None:
    """`named`: role name -> actor with a `ready()` method. Raises the first actor's failure (its role logged first),
    or TimeoutError naming every actor not ready after `timeout_s`."""
    import ray

    refs = {actor.ready.remote(): name for name, actor in named.items()}
    start = time.monotonic()
    pending = list(refs)
    while pending:
        remaining = timeout_s - (time.monotonic() - start)
        if remaining <= 0:
            late = ", ".join(refs[r] for r in pending)
            raise TimeoutError(f"starting the actors: {len(pending)} of {len(refs)} not ready after {timeout_s:.0f}s: "
                               f"{late} (fault.step_timeout_s; a busy machine starts them slowly)")
        ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
        for ref in ready:
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

    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: {len(pending)} of {len(refs)} calls unfinished after {timeout_s}s")
        ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
        for ref in ready:
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
