"""One rank of a 2-rank ZeRO-2 engine for tests/workers/test_nonfinite_guard.py: a fault on one rank only must skip the step on
both. Usage: python -m tests.workers.step_gate_ranks RANK PORT FAULT OUT_JSON (the fault happens on rank 1)."""
from __future__ import annotations

import json
import sys

import torch

from rl.workers.deepspeed_rank import init_rank
from rl.workers.step_gate import StepGate
from tests.workers.test_nonfinite_guard import _engine, _window, snapshot


def main(rank: int, port: int, fault: str, out: str) -> None:
    init_rank(rank, 2, "127.0.0.1", port, "cpu", seed=0)
    engine, scheduler = _engine(2, False)
    gate = StepGate(engine)
    first = _window(engine, gate, None)
    before, lr = snapshot(engine), scheduler.get_last_lr()
    faulty = _window(engine, gate, fault if rank == 1 else None)
    after = snapshot(engine)
    unchanged = set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    lr_kept = scheduler.get_last_lr() == lr
    last = _window(engine, gate, None)
    moved = not torch.equal(after["module.0.weight"], snapshot(engine)["module.0.weight"])
    with open(out, "w") as f:
        json.dump({"first": first, "faulty": faulty, "unchanged": unchanged, "lr_kept": lr_kept,
                   "skipped_steps": engine.skipped_steps, "last": last, "moved": moved}, f)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
