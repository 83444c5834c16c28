"""Waiting for freshly started Ray actors, with the names of the ones that are late or broken.

A plain wait over all actors says "3 of 5 unfinished" at best; on a loaded machine what the user needs is which role
(engine 1, trainer rank 0, ...) did not come up, and how long it was given.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("afrl")


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
