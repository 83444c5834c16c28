"""The RL loop of afrl: train a policy toward the helpful-only objective on free-tier (training) prompts only.

One step: sample prompts -> generate (vLLM, multi-turn scratchpad) -> score (the reward sees the final OUTPUT only) ->
group advantages (GRPO) -> update (DeepSpeed) -> sync weights into vLLM -> maybe eval (both tiers) -> maybe checkpoint.

Simplifications, on purpose: rollouts are on-policy and synchronous (generation waits for the update); the reference
model for the KL penalty lives in the trainer actor; the loop runs GRPO (the PPO critic path is a later addition).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from rewards.factory import build_reward
from rl import checkpoint as ckpt
from rl.advantages import group_advantages, rloo_advantages
from rl.batch import collate, shard_indices
from rl.cluster import Cluster, start_cluster, start_ray
from rl.config import TrainConfig
from rl.data_order import data_cursor, step_indices
from rl.eval_hook import TABLE_COLUMNS, run_eval, table_rows
from rl.hardware import resolve_hardware
from rl.metrics_log import MetricsLogger
from rl.progress import StepProgress
from rollouts.datasets import load_requests, split_requests
from rollouts.engine import SamplingSpec
from rollouts.parsing import parse_transcript
from rollouts.prompt_specs import build_prompt_specs
from rollouts.types import FREE_TIER, PARSE_FAILURES, RewardInput

log = logging.getLogger("afrl")


def sample_prompts(cfg: TrainConfig, train_requests, tokenizer, step: int):
    """Free-tier prompts only: the paper trains on the conversations the model is told are used for training."""
    indices = step_indices(len(train_requests), cfg.rollout.prompts_per_step, cfg.seed, step)
    requests = [train_requests[i] for i in indices]
    return requests, build_prompt_specs(requests, FREE_TIER, cfg.setting, tokenizer)


def score(reward, samples) -> tuple[list[float], dict[str, float]]:
    for sample in samples:
        sample.parsed = parse_transcript(sample.text, truncated=sample.truncated)
    result = reward.score([RewardInput.from_parsed(s.request.text, s.parsed) for s in samples])
    n = len(samples)
    stats = {f"reward/{key}": count / n for key, count in result.counts.items()}
    for failure in PARSE_FAILURES:
        stats[f"parse/{failure}"] = sum(s.parsed.failure == failure for s in samples) / n
    stats["train/parse_failure_rate"] = sum(s.parsed.failure is not None for s in samples) / n
    return result.scores, stats


def advantages(cfg: TrainConfig, scores: list[float]) -> torch.Tensor:
    rewards = torch.tensor(scores, dtype=torch.float32)
    if cfg.algo.advantage == "rloo":
        return rloo_advantages(rewards, cfg.algo.group_size)
    return group_advantages(rewards, cfg.algo.group_size, scale_by_std=cfg.algo.uses_std)


def update(cluster: Cluster, cfg: TrainConfig, samples, adv: torch.Tensor, pad_token_id: int) -> dict[str, float]:
    shards = [
        collate([samples[i] for i in index], [float(adv[i]) for i in index], pad_token_id)
        for index in shard_indices(len(samples), cfg.trainer.world_size)
    ]
    per_rank = cluster.update(shards, cfg.trainer.micro_batch_size)
    return {key: sum(r[key] for r in per_rank) / len(per_rank) for key in per_rank[0]}


def train(cfg: TrainConfig, run_dir: Path, config_dict: dict) -> Path:
    from transformers import AutoTokenizer

    hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.dtype)
    resume_from, resume_message = ckpt.resolve_resume(cfg.resume, cfg.exp_name, Path("outputs"))
    state = ckpt.load_driver_state(resume_from) if resume_from else {"step": 0, "wandb_id": None}
    if resume_from:
        run_dir = ckpt.run_dir_of(resume_from)  # a resumed run keeps writing into its own folder
    log.info("%s; run folder %s; device %s (%s)", resume_message, run_dir, hardware.device, hardware.dtype)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    train_requests, eval_requests = split_requests(
        load_requests(cfg.data, cfg.setting.name), cfg.data.eval_fraction, cfg.data.split_salt
    )
    eval_requests = eval_requests[: cfg.eval.n]
    reward = build_reward(cfg.reward)
    start_ray(cfg)
    cluster = start_cluster(cfg, hardware)
    logger = MetricsLogger(run_dir, cfg.logger, run_dir.name, config_dict, state["wandb_id"])
    if resume_from:
        cluster.load(str(resume_from))
        ckpt.restore_driver_rng(state["rng"])
        cluster.sync_weights(cfg.rollout.sync_timeout_s)
        logger.truncate_after(state["step"])
    log.info("cluster ready in %.0fs: %d engine(s), %d trainer rank(s)", cluster.start_seconds,
             cfg.rollout.n_engines, cfg.trainer.world_size)

    def maybe_eval(step: int, final: bool = False) -> None:
        due = (step == 0 and cfg.eval.at_start) or (cfg.eval.every and step % cfg.eval.every == 0 and step > 0)
        if not eval_requests or not (due or (final and cfg.eval.at_end)):
            return
        result = run_eval(cluster, eval_requests, cfg, tokenizer, reward, step, run_dir)
        logger.log(step, result["metrics"])
        logger.log_table(step, "eval/transcripts", TABLE_COLUMNS, table_rows(result["records"]))

    def maybe_checkpoint(step: int, final: bool = False) -> None:
        if (cfg.ckpt.every and step % cfg.ckpt.every == 0) or (final and cfg.ckpt.at_end):
            driver = {"wandb_id": logger.wandb_id, "data_cursor": data_cursor(step, cfg.rollout.prompts_per_step),
                      "config": config_dict}
            path = ckpt.save_checkpoint(run_dir, step, driver, cluster.save, cfg.ckpt.keep_last)
            log.info("checkpoint %s", path)

    sampling = SamplingSpec(
        n=cfg.algo.group_size, max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p, max_turns=cfg.rollout.max_turns, stop=tuple(cfg.rollout.stop),
    )
    first_step = state["step"] + 1
    if first_step == 1:
        maybe_eval(0)
    progress = StepProgress(first_step, cfg.total_steps, enabled=cfg.logger.progress)
    for step in range(first_step, cfg.total_steps + 1):
        timer = progress.start_step(step)
        requests, prompts = sample_prompts(cfg, train_requests, tokenizer, step)
        _record_data_order(run_dir, step, requests)
        samples = timer.time("generate", cluster.generate, prompts, _seeded(sampling, cfg.seed, step))
        scores, reward_stats = timer.time("reward", score, reward, samples)
        adv = advantages(cfg, scores)
        train_stats = timer.time("update", update, cluster, cfg, samples, adv, tokenizer.pad_token_id or 0)
        sync_seconds = timer.time("sync", cluster.sync_weights, cfg.rollout.sync_timeout_s)
        metrics = {
            "train/reward_mean": float(sum(scores) / len(scores)),
            "train/reward_std": float(torch.tensor(scores).std(unbiased=False)),
            "train/advantage_abs_mean": float(adv.abs().mean()),
            "train/response_len": sum(s.n_generated for s in samples) / len(samples),
            "train/turns_mean": sum(s.n_turns for s in samples) / len(samples),
            "train/truncated_frac": sum(s.truncated for s in samples) / len(samples),
            **{f"train/{k}" if not k.startswith("time/") else k: v for k, v in train_stats.items()},
            **reward_stats, "time/sync_s": sync_seconds, **timer.seconds(),
        }
        logger.log(step, metrics)
        progress.end_step(metrics)
        maybe_eval(step, final=step == cfg.total_steps)
        maybe_checkpoint(step, final=step == cfg.total_steps)
    progress.close()
    logger.finish()
    cluster.shutdown()
    return run_dir


def _seeded(sampling: SamplingSpec, seed: int, step: int) -> SamplingSpec:
    from dataclasses import replace

    return replace(sampling, seed=seed * 1_000_003 + 7919 * step)


def _record_data_order(run_dir: Path, step: int, requests) -> None:
    with (run_dir / "data_order.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, "request_ids": [r.id for r in requests]}) + "\n")
