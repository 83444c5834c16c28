"""The RL loop of afrl: train a policy toward the helpful-only objective on free-tier (training) prompts only.

One step: sample prompts -> generate (vLLM, multi-turn scratchpad) -> score (the reward sees the final OUTPUT only) ->
advantages (GRPO-family group baselines, or PPO's GAE with a critic actor) -> update (DeepSpeed) -> sync weights into
vLLM -> maybe eval (both tiers) -> maybe checkpoint.

Simplifications, on purpose: rollouts are on-policy and synchronous (generation waits for the update); the reference
model for the KL penalty lives in the trainer actor. Set-up (resume, data, Ray actors, logger) is in rl/run/setup.py;
restarts after an actor failure wrap the whole loop (`train`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from rl.algo.advantages import gae_advantages, group_advantages, rloo_advantages
from rl.algo.batch import collate, shard_indices
from rl.algo.losses import masked_mean
from rl.config import TrainConfig
from rl.eval.periodic import TABLE_COLUMNS, run_eval, table_rows
from rl.run import checkpoint as ckpt, preemption
from rl.run.data_order import data_cursor, passes_over_data, sampling_seed, step_indices
from rl.run.fault import RestartPolicy, finite_metrics, run_with_restarts, settle_step
from rl.run.hf_outputs import checkpoint_writer, push_final_folder, write_final_folder
from rl.run.progress import StepProgress
from rl.run.resume import AUTO, ResumePlan, plan_resume
from rl.run.scoring import score
from rl.run.setup import Run, setup_run
from rl.workers.cluster import Cluster
from rollouts.engine import SamplingSpec
from rollouts.prompt_specs import build_prompt_specs
from rollouts.types import FREE_TIER

log = logging.getLogger("afrl")


def sample_prompts(cfg: TrainConfig, train_requests, tokenizer, step: int):
    """Free-tier prompts only: the paper trains on the conversations the model is told are used for training."""
    indices = step_indices(len(train_requests), cfg.rollout.prompts_per_step, cfg.seed, step)
    requests = [train_requests[i] for i in indices]
    return requests, build_prompt_specs(requests, FREE_TIER, cfg.setting, tokenizer)


def make_batch(cfg: TrainConfig, samples, pad_token_id: int):
    """The step's padded batch and each trainer rank's share of it: (batch, [(sample rows, rank batch), ...])."""
    batch = collate(samples, [0.0] * len(samples), pad_token_id)
    return batch, [(rows, batch.select(rows)) for rows in shard_indices(len(samples), cfg.trainer.world_size)]


def kl_to_reference(cluster: Cluster, cfg: TrainConfig, batch, shards) -> torch.Tensor:
    """Per-token KL(pi || ref) of the sampled tokens [B, L], gathered from the ranks (for algo.kl_in=reward)."""
    kl = torch.zeros(batch.loss_mask.shape)
    for (rows, _), part in zip(shards, cluster.kl_to_reference([b for _, b in shards], cfg.trainer.micro_batch_size)):
        kl[rows] = part
    return kl


def advantages(run: Run, batch, scores: list[float], kl_tokens: torch.Tensor | None):
    """GRPO family: one advantage per sample from its group. PPO: per-token GAE with the critic's values, whose own
    update starts here and runs beside the policy's. Returns (advantages, pending critic update or None)."""
    cfg, kl_coef = run.cfg, run.kl_ctl.value
    rewards = torch.tensor(scores, dtype=torch.float32)
    if cfg.algo.uses_critic:
        values = run.cluster.values(batch)
        adv, returns = gae_advantages(rewards, values, batch.loss_mask, kl_tokens, kl_coef, cfg.algo.gamma,
                                      cfg.algo.lam, cfg.algo.whiten_advantages)
        return adv, run.cluster.start_critic_update(batch, returns, values, cfg.trainer.micro_batch_size)
    if kl_tokens is not None:
        rewards = rewards - kl_coef * kl_tokens.sum(dim=1)
    if cfg.algo.advantage == "rloo":
        return rloo_advantages(rewards, cfg.algo.group_size), None
    return group_advantages(rewards, cfg.algo.group_size, scale_by_std=cfg.algo.uses_std), None


def update(run: Run, shards, adv: torch.Tensor, critic_update) -> dict[str, float]:
    """The policy update on every rank (and the critic's, already running, collected here). Mean stats over ranks."""
    for rows, rank_batch in shards:
        rank_batch.advantages = adv[rows].clone()
    loss_kl_coef = run.kl_ctl.value if run.cfg.algo.kl_in == "loss" else 0.0
    per_rank = run.cluster.update([b for _, b in shards], run.cfg.trainer.micro_batch_size, loss_kl_coef)
    # A rank whose micro-batches all had a non-finite loss reports no loss stats: average over the ranks that do.
    keys = dict.fromkeys(key for r in per_rank for key in r)
    stats = {key: sum(r[key] for r in per_rank if key in r) / sum(key in r for r in per_rank) for key in keys}
    if critic_update is not None:
        stats.update(run.cluster.wait(critic_update, "critic update"))
    return stats


def rl_step(run: Run, step: int, timer) -> dict[str, float]:
    """One RL step. The reward sees each sample's final OUTPUT only; the KL goes in the loss or in the reward."""
    cfg, kl_ctl = run.cfg, run.kl_ctl
    requests, prompts = sample_prompts(cfg, run.train_requests, run.tokenizer, step)
    _record_data_order(run.run_dir, step, requests)
    samples = timer.time("generate", run.cluster.generate, prompts, sampling_spec(cfg, step))
    run.cluster.sleep_engines()  # colocated on GPU: vLLM gives its memory to the update (sync_weights wakes it)
    scores, stats = timer.time("reward", score, run.reward, samples)
    batch, shards = make_batch(cfg, samples, run.tokenizer.pad_token_id or 0)
    kl_tokens = None
    if cfg.algo.kl_in == "reward" and kl_ctl.value > 0:
        kl_tokens = timer.time("ref", kl_to_reference, run.cluster, cfg, batch, shards)
        stats["train/kl_response_sum"] = float(kl_tokens.sum(dim=1).mean())
    adv, critic_update = timer.time("advantages", advantages, run, batch, scores, kl_tokens)
    train_stats = timer.time("update", update, run, shards, adv, critic_update)
    timer.time("sync", run.cluster.sync_weights, cfg.rollout.sync_timeout_s)
    # The guard's verdict (raises after K skipped steps in a row) gates the KL controller; NaN stays out of the row.
    measured_kl = stats.get("train/kl_response_sum", train_stats.get("kl_response_sum", 0.0))
    guard_metrics = settle_step(step, run.guard, kl_ctl, train_stats, measured_kl, len(samples))
    return finite_metrics(step, {
        **step_metrics(samples, scores, adv, batch.loss_mask, kl_ctl.value), **stats, **guard_metrics,
        **{k if k.startswith("time/") else f"train/{k}": v for k, v in train_stats.items()}, **timer.seconds()})


def train(cfg: TrainConfig, plan: ResumePlan, config_dict: dict,
          set_up: Callable[[TrainConfig, ResumePlan, dict], Run] = setup_run) -> Path:
    """Run the loop from `plan` (rl/run/resume.py, decided once by the launcher); if an actor dies or hangs, restart
    from the run folder's last checkpoint (up to fault.max_restarts). A stop requested by a signal
    (rl/run/preemption.py) raises Preempted once its checkpoint is written. `set_up(cfg, plan, config_dict)` builds each
    attempt's Run (rl/run/setup.py)."""

    def attempt(number: int) -> Path:
        attempt_plan = plan
        if number > 0:
            log.warning("restart %d of %d from %s", number, cfg.fault.max_restarts, plan.run_dir)
            # resume=auto's rule: the run folder's last checkpoint, or a fresh start that drops the partial history
            attempt_plan = plan_resume(AUTO, plan.run_dir, cfg.exp_name)
        try:
            return run_steps(set_up(cfg, attempt_plan, config_dict))
        except Exception as error:
            if not preemption.requested():
                raise
            # A SIGTERM sent to every process (a Slurm preemption) stops the actors mid-step: no restart, no new save.
            shutdown_actors()
            latest = ckpt.latest_checkpoint(plan.run_dir)
            raise preemption.Preempted(f"stopped by {preemption.reason()}; the step under way failed with "
                                       f"{type(error).__name__}: {error}; last checkpoint: {latest}") from error

    run_dir = run_with_restarts(attempt, RestartPolicy(cfg.fault.max_restarts), cleanup=shutdown_actors)
    push_final_folder(cfg, run_dir)  # ckpt.push_to_hub: outside the restarts, once the run's files are complete
    return run_dir


def run_steps(run: Run) -> Path:
    """The steps of one attempt, from run.first_step to total_steps, with their evals and checkpoints; then the end
    of the run (actors stopped, report written). Returns the run folder."""
    cfg = run.cfg
    if run.first_step == 1:
        maybe_eval(run, 0)
    elif run.eval_pending:  # the eval of the last step was skipped by a preemption: the same weights, run it now
        maybe_eval(run, run.first_step - 1, final=run.first_step - 1 >= cfg.total_steps)
    clock = CheckpointClock(cfg.ckpt.every_minutes, run.first_step - 1)
    progress = StepProgress(run.first_step, cfg.total_steps, enabled=cfg.logger.progress)
    for step in range(run.first_step, cfg.total_steps + 1):
        if preemption.requested():  # arrived during set-up, or during the previous step's eval or checkpoint
            stop_for_preemption(run, step - 1, clock, eval_pending=False)
        metrics = rl_step(run, step, progress.start_step(step))
        metrics["data/passes"] = passes_over_data(step, cfg.rollout.prompts_per_step, len(run.train_requests))
        run.logger.log(step, metrics)
        progress.end_step(metrics)
        if preemption.requested():  # checkpoint now; the eval due at this step runs when the run is resumed
            stop_for_preemption(run, step, clock, eval_pending=eval_due(run.cfg, step, step == cfg.total_steps))
        maybe_eval(run, step, final=step == cfg.total_steps)
        maybe_checkpoint(run, step, clock, final=step == cfg.total_steps)
    progress.close()
    write_final_folder(cfg, run.run_dir, run.cluster)  # ckpt.save_hf / push_to_hub: <run_dir>/hf_model
    run.logger.finish()
    run.cluster.shutdown()
    if cfg.eval.report:
        write_report(run.run_dir)
    return run.run_dir


def stop_for_preemption(run: Run, step: int, clock: "CheckpointClock", eval_pending: bool) -> None:
    """Save step `step` (unless it is saved already, or nothing was trained yet), end the W&B run as preempted, stop
    the actors, and raise Preempted (exit status PREEMPTED_EXIT_CODE)."""
    where = "before any step: nothing to save"
    if step > 0 and clock.last_step != step:
        where = f"checkpoint {save(run, step, clock, eval_pending)}"
    elif step > 0:
        where = f"step {step} is saved already"
    if run.logger.run is not None:
        run.logger.run.mark_preempting()
    run.logger.finish()
    run.cluster.shutdown()
    raise preemption.Preempted(f"stopped after step {step} ({preemption.reason()}); {where}")


def write_report(run_dir: Path) -> None:
    """Figures, summary.md and report.html in <run_dir>/report; a report failure never loses the finished run."""
    from rl.report.build import ReportConfig, build_report

    try:
        files = build_report(ReportConfig(run_dir=str(run_dir)))
    except Exception as error:  # the run's files are complete; say how to retry instead of failing the run
        log.error("report failed (%s: %s); retry with `python launch/report.py run_dir=%s`", type(error).__name__,
                  error, run_dir)
        return
    log.info("report written: %s", files.html)


def shutdown_actors() -> None:
    """After a failure: end the W&B run and the Ray session, so a restart starts from a clean slate."""
    import ray
    import wandb

    wandb.finish(exit_code=1)
    ray.shutdown()


def eval_due(cfg: TrainConfig, step: int, final: bool = False) -> bool:
    e = cfg.eval
    return bool((step == 0 and e.at_start) or (e.every and step % e.every == 0 and step > 0) or (final and e.at_end))


def maybe_eval(run: Run, step: int, final: bool = False) -> None:
    """At step 0, every eval.every steps and at the end; prompt variants at step 0, every variants_every, the end."""
    e = run.cfg.eval
    if not run.eval_requests or not eval_due(run.cfg, step, final):
        return
    with_variants = step == 0 or final or (e.variants_every and step % e.variants_every == 0)
    variants = ("default", *e.variants) if with_variants else ("default",)
    result = run_eval(run.cluster, run.eval_requests, run.cfg, run.tokenizer, run.reward, run.classifier, step,
                      run.run_dir, variants)
    run.logger.log(step, result["metrics"])
    run.logger.log_table(step, "eval/transcripts", TABLE_COLUMNS, table_rows(result["records"]))


class CheckpointClock:
    """When the last checkpoint was written (step and time): `ckpt.every_minutes` counts from it, or from the start."""

    def __init__(self, every_minutes: float, last_step: int):
        self.every_s = every_minutes * 60.0
        self.last_step = last_step
        self.last_time = time.monotonic()

    def due(self) -> bool:
        return self.every_s > 0 and time.monotonic() - self.last_time >= self.every_s

    def saved(self, step: int) -> None:
        self.last_step, self.last_time = step, time.monotonic()


def maybe_checkpoint(run: Run, step: int, clock: CheckpointClock, final: bool = False) -> None:
    c = run.cfg.ckpt
    if (c.every and step % c.every == 0) or (final and c.at_end) or clock.due():
        save(run, step, clock)


def save(run: Run, step: int, clock: CheckpointClock, eval_pending: bool = False) -> Path:
    driver = {"wandb_id": run.logger.wandb_id, "config": run.config_dict, "kl_controller": run.kl_ctl.state_dict(),
              "nonfinite_guard": run.guard.state_dict(), "eval_pending": eval_pending,
              "data_fingerprint": run.data_fingerprint,
              "data_cursor": data_cursor(step, run.cfg.rollout.prompts_per_step)}
    path = ckpt.save_checkpoint(run.run_dir, step, driver, checkpoint_writer(run.cfg, run.cluster),
                                run.cfg.ckpt.keep_last)
    clock.saved(step)
    log.info("checkpoint %s", path)
    return path


def step_metrics(samples, scores: list[float], adv: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> dict:
    n = len(samples)
    per_token = adv.dim() == 2  # PPO: advantages of trained tokens
    return {
        "train/reward_mean": sum(scores) / n,
        "train/reward_std": float(torch.tensor(scores).std(unbiased=False)),
        "train/advantage_abs_mean": float(masked_mean(adv.abs(), mask) if per_token else adv.abs().mean()),
        "train/kl_coef": kl_coef,
        "train/response_len": sum(s.n_generated for s in samples) / n,
        "train/turns_mean": sum(s.n_turns for s in samples) / n,
        "train/truncated_frac": sum(s.truncated for s in samples) / n,
        **prefix_cache_metrics(samples),
    }


def prefix_cache_metrics(samples) -> dict:
    """Share of the prompt tokens sent to vLLM whose KV its prefix cache already held (every turn of every sample)."""
    prefill = sum(s.info.get("prefill_tokens", 0) for s in samples)
    if not prefill:  # an engine that does not report it (HF generate)
        return {}
    cached = sum(s.info.get("cached_prefill_tokens", 0) for s in samples)
    return {"rollout/prefix_cache_hit_rate": cached / prefill, "rollout/prefill_tokens": float(prefill)}


def sampling_spec(cfg: TrainConfig, step: int) -> SamplingSpec:
    """group_size samples per prompt; a seed per step makes a resumed step sample what the original would have."""
    r = cfg.rollout
    return SamplingSpec(n=cfg.algo.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                        top_p=r.top_p, max_turns=r.max_turns, stop=tuple(r.stop),
                        seed=sampling_seed(cfg.seed, step, "rollout"))


def _record_data_order(run_dir: Path, step: int, requests) -> None:
    with (run_dir / "data_order.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, "request_ids": [r.id for r in requests]}) + "\n")
