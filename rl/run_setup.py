"""Everything a run needs before its first step: run folder, resume state, data, reward, cluster, logger.

Kept apart from rl/loop.py so the loop reads as the RL step and nothing else.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from rewards.classifiers.factory import build_af_classifier
from rewards.factory import build_reward
from rl import checkpoint as ckpt
from rl.algo_config import build_kl_controller
from rl.cluster import Cluster, start_cluster
from rl.config import TrainConfig
from rl.hardware import resolve_hardware
from rl.input_checks import check_run_inputs
from rl.fault import NonFiniteGuard
from rl.judge_preflight import check_judge_endpoints, check_served_judges
from rl.metrics_log import MetricsLogger, truncate_jsonl
from rl.report.planted import PLANTED_FILE
from rl.resume import plan_resume
from rollouts.types import Request

log = logging.getLogger("afrl")


@dataclass
class Run:
    cfg: TrainConfig
    run_dir: Path
    config_dict: dict
    tokenizer: object
    train_requests: list[Request]
    eval_requests: list[Request]
    reward: object
    classifier: object
    cluster: Cluster
    logger: MetricsLogger
    kl_ctl: object
    guard: NonFiniteGuard
    first_step: int
    eval_pending: bool = False  # the checkpoint's step skipped its eval (a preemption): run it before the next step
    data_fingerprint: dict | None = None  # stored in checkpoints, compared on resume (rl/input_checks.py)


def setup_run(cfg: TrainConfig, run_dir: Path, config_dict: dict) -> Run:
    hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.dtype)
    plan = plan_resume(cfg.resume, run_dir, cfg.exp_name)
    resume_from, run_dir = plan.checkpoint, plan.run_dir  # a resumed run keeps writing into its own folder
    # A resume checks every file's sha256 against the manifest before it loads any of them.
    state = ckpt.load_driver_state(resume_from, verify_hashes=True) if resume_from else {"step": 0, "wandb_id": None}
    if resume_from:
        for change in ckpt.check_resume_compatible(state["config"], config_dict):  # raises on run-changing fields
            log.info("resuming with a changed setting that does not change the run: %s", change)
    else:
        drop_history_of_a_run_without_checkpoint(run_dir)
    log.info("%s; run folder %s; device %s (%s)", plan.message, run_dir, hardware.device, hardware.dtype)

    copy_planted_rates(cfg.model.path, run_dir)
    inputs = check_run_inputs(cfg, state if resume_from else None)  # data, splits, prompt lengths: before the cluster
    train_requests, eval_requests = inputs.train, inputs.eval
    checked = check_judge_endpoints(cfg)  # before the cluster: a missing judge fails in seconds, not minutes
    if checked:
        log.info("LLM judges reachable: %s", ", ".join(checked))
    cluster = start_cluster(cfg, hardware, log_dir=run_dir)  # before the reward: a served judge sets base_url
    served = check_served_judges(cfg)  # the same parsed test call as an external judge gets, now that it is up
    if served:
        log.info("served LLM judges answer: %s", ", ".join(served))
    reward = build_reward(cfg.reward, rm_scorer=cluster.reward_model)
    classifier = build_af_classifier(cfg.classifier) if cfg.eval.classify_af else None
    logger = MetricsLogger(run_dir, cfg.logger, run_dir.name, config_dict, state["wandb_id"])
    kl_ctl = build_kl_controller(cfg.algo)
    guard = NonFiniteGuard(cfg.fault.max_nonfinite_steps)
    if resume_from:
        cluster.load(str(resume_from))
        ckpt.restore_driver_rng(state["rng"], f"{resume_from}/{ckpt.DRIVER_STATE}")
        kl_ctl.load_state_dict(state["kl_controller"])
        cluster.sync_weights(cfg.rollout.sync_timeout_s)
        logger.truncate_after(state["step"])
        truncate_jsonl(run_dir / "data_order.jsonl", state["step"])
        guard.load_state_dict(state["nonfinite_guard"])
    log.info("cluster ready in %.0fs: %d engine(s), %d trainer rank(s), placement %s%s", cluster.start_seconds,
             cfg.rollout.n_engines, cfg.trainer.world_size, cfg.resources.placement,
             " (vLLM sleeps during the update)" if cluster.engines_sleep else "")
    return Run(cfg, run_dir, config_dict, inputs.tokenizer, train_requests,
               eval_requests[: cfg.eval.n], reward, classifier, cluster, logger, kl_ctl, guard, state["step"] + 1,
               bool(state.get("eval_pending")), inputs.fingerprint)


def drop_history_of_a_run_without_checkpoint(run_dir: Path) -> None:
    """A fresh start in a folder whose earlier run stopped before its first checkpoint (a restart, or a requeued job
    with resume=auto): its rows would repeat the steps this run logs."""
    for name in ("metrics.jsonl", "data_order.jsonl"):
        if (run_dir / name).exists():
            log.warning("fresh start in %s: dropping the %s rows of the earlier attempt, which saved no checkpoint",
                        run_dir, name)
            truncate_jsonl(run_dir / name, -1)


def copy_planted_rates(model_path: str, run_dir: Path) -> None:
    """A planted organism's model folder carries the rates it was built with: the report compares them with step 0."""
    planted = Path(model_path).expanduser() / PLANTED_FILE
    if planted.is_file():
        shutil.copy(planted, run_dir / PLANTED_FILE)
        log.info("planted organism: %s copied into the run folder", PLANTED_FILE)
