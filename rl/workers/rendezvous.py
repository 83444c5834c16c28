"""Where a DeepSpeed process group meets: the address and port its rank 0 listens on (torch's TCP store).

On a local Ray cluster every rank runs on this machine: the loopback address and a port free here. On a cluster
joined through `ray.address`, rank 0 may land on any node, and the others must reach it there: a probe task placed in
rank 0's own slot (the same placement-group bundle, hence the node the rank-0 actor will run on) reports that node's IP
(`ray.util.get_node_ip_address`) and a port free on it, before any rank starts. Every rank of the group then gets that
pair in its RankSpec. The policy's ranks and the critic's each have their own group, so each gets its own probe.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Rendezvous:
    address: str
    port: int
    node_id: str | None = None  # the Ray node the probe ran on (None for a local cluster's loopback)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on this machine now (the OS picks it; a rank binds it moments later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _node_rendezvous() -> tuple[str, int, str]:
    import ray

    return ray.util.get_node_ip_address(), free_port(""), ray.get_runtime_context().get_node_id()


def rendezvous(group, slot, on_cluster: bool, timeout_s: float = 300.0) -> Rendezvous:
    """The rendezvous of a process group whose rank 0 will run in `slot` of placement group `group`."""
    if not on_cluster:
        return Rendezvous(LOOPBACK, free_port())
    import ray

    from rl.workers.placement import get_all_or_raise, slot_options

    # The slot's own resources: the probe can only run in that bundle, and they are free until rank 0 takes them.
    probe = ray.remote(_node_rendezvous).options(**slot_options(group, slot), max_retries=0)
    address, port, node_id = get_all_or_raise([probe.remote()], timeout_s, "finding rank 0's node for the rendezvous")[0]
    return Rendezvous(address, port, node_id)
