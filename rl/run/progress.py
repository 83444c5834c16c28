"""A progress bar over RL steps showing the reward and where the time of each step went."""
from __future__ import annotations

import time

from tqdm import tqdm


class PhaseTimer:
    def __init__(self):
        self.start = time.time()
        self.phases: dict[str, float] = {}

    def time(self, phase: str, fn, *args):
        start = time.time()
        try:
            return fn(*args)
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.time() - start

    def seconds(self) -> dict[str, float]:
        return {**{f"time/{k}_s": v for k, v in self.phases.items()}, "time/step_s": time.time() - self.start}


class StepProgress:
    def __init__(self, first_step: int, total_steps: int, enabled: bool = True):
        self.bar = tqdm(total=total_steps, initial=first_step - 1, desc="RL steps", unit="step", disable=not enabled,
                        dynamic_ncols=True)

    def start_step(self, step: int) -> PhaseTimer:
        self.bar.set_description(f"RL step {step}")
        return PhaseTimer()

    def end_step(self, metrics: dict) -> None:
        phases = {k[5:-2]: v for k, v in metrics.items() if k.startswith("time/") and k.endswith("_s") and k != "time/step_s"}
        # "reward_mean", not "reward": the reward phase's time is also a postfix entry and would replace it
        postfix = {"reward_mean": f"{metrics['train/reward_mean']:.2f}", **{k: f"{v:.1f}s" for k, v in phases.items()}}
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
