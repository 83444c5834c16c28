"""afrl's side of the benchmark: `rl.run.setup.setup_run` (the real Ray cluster) and `rl.loop.rl_step`, step by step.

Each timed step is exactly the step `rl.loop.train` runs (sample prompts -> generate -> score -> advantages -> update
-> sync weights), without eval and checkpoints, which the bench leaves out (TRL's side has none either); its metrics
row also goes to the run folder's metrics.jsonl. The split comes from the loop's own phase timer; the trainer reports
how much of `update` went to the no-grad log-prob passes (old policy / reference), shown as its own phase.
"""
from __future__ import annotations

from pathlib import Path

from rl.bench.floor import prompt_shape
from rl.config import TrainConfig


class AfrlSide:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run = None

    def start(self) -> float:
        """Data, reward, Ray and the cluster, as `rl.loop.train` sets them up. Returns the cluster start seconds."""
        import rl.loop  # noqa: F401  (import errors surface now, not after TRL's first step)
        from rl.run.resume import plan_resume
        from rl.run.setup import setup_run

        self.run_dir.mkdir(parents=True, exist_ok=True)
        plan = plan_resume(self.cfg.resume, self.run_dir, self.cfg.exp_name)
        self.run = setup_run(self.cfg, plan, {"bench": True})
        return self.run.cluster.start_seconds

    def step(self, step: int) -> dict:
        from rl.loop import rl_step, sample_prompts
        from rl.run.progress import PhaseTimer

        run = self.run
        metrics = rl_step(run, step, PhaseTimer())
        run.logger.log(step, metrics)
        _requests, prompts = sample_prompts(self.cfg, run.train_requests, run.tokenizer, step)  # deterministic
        n = self.cfg.samples_per_step
        logprob_s = metrics.get("time/trainer_logprob_s", 0.0)
        return {
            "step_s": metrics["time/step_s"],
            "samples": n,
            "generated_tokens": metrics["train/response_len"] * n,
            **prompt_shape([p.token_ids for p in prompts]),
            "generate_s": metrics["time/generate_s"], "reward_s": metrics["time/reward_s"],
            "logprob_s": logprob_s + metrics.get("time/ref_s", 0.0),
            "update_s": metrics["time/update_s"] - logprob_s, "sync_s": metrics["time/sync_s"],
            "reward_mean": metrics["train/reward_mean"],
            "prefix_cache_hit_rate": metrics.get("rollout/prefix_cache_hit_rate", float("nan")),
        }

    def sample_batch(self, step: int):
        """A fresh batch like step `step`'s (untimed), for the prefix-sharing row."""
        from rl.loop import sample_prompts, sampling_spec

        _requests, prompts = sample_prompts(self.cfg, self.run.train_requests, self.run.tokenizer, step)
        return self.run.cluster.generate(prompts, sampling_spec(self.cfg, step))

    def shutdown(self) -> None:
        if self.run is not None:
            self.run.logger.finish()
            self.run.cluster.shutdown()
            self.run = None
