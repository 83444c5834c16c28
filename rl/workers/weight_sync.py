"""How the policy's weights reach the vLLM engines after each update (`rollout.weight_sync`), and the driver's part of
the broadcast path.

- object_store: trainer rank 0 -> Ray's object store (numpy) -> every engine (rl/workers/cluster.py). No group to
  set up; the CPU default.
- broadcast (`nccl`): a process group of trainer rank 0 and every engine worker; rank 0 broadcasts the weights bucket
  by bucket (rollouts/weight_buckets.py). nccl on GPU, gloo on CPU: the same code, tested on CPU.
- cuda_ipc: trainer and engine on one GPU (resources.placement=colocated): the trainer's bucket is shared by handle,
  only headers cross the (gloo) group.
`auto` picks broadcast on separate GPUs, cuda_ipc when colocated, object_store on CPU.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from rl.workers.placement import each_when_done, get_all_or_raise
from rollouts.weight_buckets import DEFAULT_BUCKET_BYTES, backend_for
from rollouts.weight_receiver import WORKER_EXTENSION

log = logging.getLogger("afrl")

# The members' own collectives time out after rollout.sync_timeout_s and raise naming the member and bucket; the
# driver waits this much longer so that their error, not its own vaguer one, is what the run reports.
DRIVER_GRACE_S = 30.0


def resolve_weight_sync(setting: str, device: str, placement: str, n_engines: int, world_size: int,
                        tensor_parallel_size: int) -> str:
    """rollout.weight_sync (auto | object_store | nccl) -> object_store | broadcast | cuda_ipc."""
    if setting == "object_store":
        return "object_store"
    colocated = device == "cuda" and placement == "colocated"
    if setting == "nccl":
        if colocated:
            raise ValueError("rollout.weight_sync=nccl: with resources.placement=colocated trainer rank 0 and engine 0 "
                             "share a GPU, and NCCL cannot join two ranks on one GPU; use rollout.weight_sync=auto "
                             "(CUDA IPC) or object_store")
        return "broadcast"
    if setting != "auto":
        raise ValueError(f"rollout.weight_sync={setting!r}: expected auto | object_store | nccl")
    if device != "cuda":
        return "object_store"
    if not colocated:
        return "broadcast"
    # IPC reaches an engine only from a trainer rank on its own GPU: engine i shares bundle i with trainer rank i.
    return "cuda_ipc" if n_engines <= world_size and tensor_parallel_size == 1 else "object_store"


def engine_extension_kwargs(mode: str) -> dict:
    """vLLM arguments of an engine that receives weights by `mode`."""
    return {} if mode == "object_store" else {"worker_extension_cls": WORKER_EXTENSION}


@dataclass
class BroadcastSync:
    """The driver's side of the broadcast / CUDA IPC sync: forms the group once, then runs one sync per call."""

    mode: str  # broadcast | cuda_ipc
    device: str  # cpu | cuda
    trainers: list
    engines: list
    host: str | None = None  # the group's address: None = trainer rank 0's node address as Ray sees it
    bucket_bytes: int = DEFAULT_BUCKET_BYTES
    connected: bool = field(default=False, init=False)

    @property
    def backend(self) -> str:
        return "gloo" if self.mode == "cuda_ipc" else backend_for(self.device)

    def connect(self, timeout_s: float) -> None:
        """Trainer rank 0 opens the group's store; it and every engine worker join (offsets: engine i's workers
        follow engine i-1's)."""
        start = time.time()
        wait_s = timeout_s + DRIVER_GRACE_S
        workers = get_all_or_raise([e.weight_workers.remote() for e in self.engines], wait_s, "engine worker counts")
        world_size = 1 + sum(workers)
        host, port = get_all_or_raise(
            [self.trainers[0].open_weight_sync_store.remote(world_size, timeout_s, self.host)], wait_s,
            "trainer rank 0 opening the weight-sync store")[0]
        offsets = [1 + sum(workers[:i]) for i in range(len(self.engines))]
        joins = [self.trainers[0].join_weight_group.remote(world_size, self.backend, timeout_s)]
        joins += [e.join_weight_group.remote(host, port, offset, world_size, self.backend, timeout_s,
                                             f"rollout engine {i}", self.mode == "cuda_ipc")
                  for i, (e, offset) in enumerate(zip(self.engines, offsets))]
        get_all_or_raise(joins, wait_s, f"forming the weight-sync group ({self.backend}, {world_size} members at "
                                        f"{host}:{port}; rollout.sync_timeout_s)")
        self.connected = True
        log.info("weight sync: %s over %s, %d members, formed in %.1fs", self.mode, self.backend, world_size,
                 time.time() - start)

    def sync(self, timeout_s: float) -> None:
        """Every trainer rank streams (rank 0 sends), every engine receives; the first failure is raised at once. A
        failed sync leaves the group unusable, so the next one forms it again."""
        if not self.connected:
            self.connect(timeout_s)
        ipc = self.mode == "cuda_ipc"
        calls = {t.send_weights.remote(self.bucket_bytes, ipc): f"trainer rank {r}" for r, t in enumerate(self.trainers)}
        calls.update({e.receive_weights.remote(): f"rollout engine {i}" for i, e in enumerate(self.engines)})
        try:
            wait_for_members(calls, timeout_s + DRIVER_GRACE_S, f"weight {self.mode} into {len(self.engines)} engine(s)")
        except BaseException:
            self.connected = False
            raise


def wait_for_members(calls: dict, timeout_s: float, what: str) -> None:
    """`calls`: Ray ref -> the member's name. Raises the first failure as soon as it is seen (the member's own error
    names its bucket); past `timeout_s` a TimeoutError names every member still busy."""
    import ray

    def still_busy(pending: list) -> Exception:
        return TimeoutError(f"{what}: {', '.join(calls[ref] for ref in pending)} still busy after {timeout_s:g}s "
                            f"(rollout.sync_timeout_s + {DRIVER_GRACE_S:g}s)")

    for ref in each_when_done(list(calls), timeout_s, still_busy):
        ray.get(ref)
