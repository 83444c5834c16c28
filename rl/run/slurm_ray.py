"""The Python side of a Ray cluster started across a Slurm allocation (launch/slurm_ray_cluster.sh).

- `wait_for_nodes`: the script starts `ray start` on every node in the background; the driver must not place its
  actors before all of them have joined (a placement group would land on the head alone, or wait out
  resources.placement_timeout_s). `python -m rl.run.slurm_ray --address HOST:PORT --nodes N --timeout-s S` exits 0
  once N nodes are alive, or 1 naming how many joined.
- `is_idle_task`: under `launcher=slurm_multinode`, submitit runs the job's Python function once per node (one task
  each), but Ray is the one that uses the other nodes: only task 0 drives the run, the others return at once.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Mapping

CLUSTER_ADDRESS_ENV = "AFRL_RAY_ADDRESS"  # set by launch/slurm_ray_cluster.sh --start-only (the multi-node launcher)


def alive_nodes(address: str) -> int:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    return sum(1 for node in ray.nodes() if node["Alive"])


def wait_for_nodes(address: str, count: int, timeout_s: float, poll_s: float = 2.0) -> int:
    """Block until `count` nodes are alive in the cluster at `address`; TimeoutError naming how many did."""
    deadline = time.monotonic() + timeout_s
    while (alive := alive_nodes(address)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray cluster at {address}: {alive} of {count} nodes joined after {timeout_s:.0f}s "
                               "(see the `ray start` output of the missing nodes in the job's log)")
        time.sleep(poll_s)
    return alive


def is_idle_task(environ: Mapping[str, str] = os.environ) -> bool:
    """A Slurm task other than 0 of a job whose Ray cluster the multi-node launcher started (nothing to run here)."""
    return bool(environ.get(CLUSTER_ADDRESS_ENV)) and environ.get("SLURM_PROCID", "0") != "0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        alive = wait_for_nodes(args.address, args.nodes, args.timeout_s)
    except TimeoutError as error:
        print(f"[afrl] {error}", file=sys.stderr)
        return 1
    print(f"[afrl] Ray cluster at {args.address}: {alive} nodes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
