"""Everything a run needs before its first step: run folder, resume state, data, reward, cluster, logger.

Kept apart from rl/loop.py so the loop reads as the RL step and nothing else. launch/eval.py starts its cluster and
builds its scorers and held-out requests with the same functions (`start_run_cluster`, `build_scorers`,
`held_out_requests`), so an eval run and a training run cannot drift apart.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rewards.classifiers.factory import build_af_classifier
from rewards.factory import build_reward
from rl.algo.config import build_kl_controller
from rl.config import TrainConfig
from rl.report.planted import PLANTED_FILE
from rl.run import checkpoint as ckpt
from rl.run.fault import NonFiniteGuard
from rl.run.input_checks import check_run_inputs
from rl.run.metrics_log import MetricsLogger, truncate_jsonl
from rl.run.resume import ResumePlan
from rl.workers.cluster import Cluster, start_cluster
from rl.workers.judge_preflight import check_judge_endpoints, check_served_judges
from rl.workers.placement import Hardware, resolve_hardware
from rollouts.types import Request

if TYPE_CHECKING:  # annotations only: transformers is heavy, and the reward/classifier types are protocols
    from transformers import PreTrainedTokenizerBase

    from rewards.base import Reward
    from rewards.classifiers.factory import AFClassifier
    from rl.algo.kl import AdaptiveKLController, FixedKLController

log = logging.getLogger("afrl")


@dataclass
class Run:
    """What one attempt of a run works with: its config and folder, data, scorers, actors, logger and driver state."""

    cfg: TrainConfig
    run_dir: Path
    config_dict: dict
    tokenizer: PreTrainedTokenizerBase
    train_requests: list[Request]
    eval_requests: list[Request]
    reward: Reward
    classifier: AFClassifier | None  # None unless eval.classify_af
    cluster: Cluster
    logger: MetricsLogger
    kl_ctl: FixedKLController | AdaptiveKLController
    guard: NonFiniteGuard
    first_step: int
    eval_pending: bool = False  # the checkpoint's step skipped its eval (a preemption): run it before the next step
    data_fingerprint: dict | None = None  # stored in checkpoints, compared on resume (rl/run/input_checks.py)


def setup_run(cfg: TrainConfig, plan: ResumePlan, config_dict: dict) -> Run:
    """Set up the run `plan` says (rl/run/resume.py): a fresh start in plan.run_dir, or a resume of plan.checkpoint."""
    hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.dtype)
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
    log.info("%s", inputs.describe())
    cluster = start_run_cluster(cfg, hardware, run_dir)
    reward, classifier = build_scorers(cfg, cluster)
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
    return Run(cfg, run_dir, config_dict, inputs.tokenizer, inputs.train, held_out_requests(cfg, inputs.eval),
               reward, classifier, cluster, logger, kl_ctl, guard, state["step"] + 1, bool(state.get("eval_pending")),
               inputs.fingerprint)


def start_run_cluster(cfg: TrainConfig, hardware: Hardware, run_dir: Path, with_trainers: bool = True) -> Cluster:
    """The Ray cluster (rl/workers/cluster.py), with the LLM judges checked around it: an external judge before it
    starts (a missing judge fails in seconds, not minutes), a served one once it is up. Judge server logs go to
    `run_dir`."""
    checked = check_judge_endpoints(cfg)
    if checked:
        log.info("LLM judges reachable: %s", ", ".join(checked))
    cluster = start_cluster(cfg, hardware, with_trainers=with_trainers, log_dir=run_dir)
    served = check_served_judges(cfg)  # the same parsed test call as an external judge gets, now that it is up
    if served:
        log.info("served LLM judges answer: %s", ", ".join(served))
    return cluster


def build_scorers(cfg: TrainConfig, cluster: Cluster) -> tuple[Reward, AFClassifier | None]:
    """The reward (after the cluster: a served judge sets its base_url, the RM scorer is an actor) and the AF
    classifier of the evals (None unless eval.classify_af)."""
    reward = build_reward(cfg.reward, rm_scorer=cluster.reward_model)
    return reward, build_af_classifier(cfg.classifier) if cfg.eval.classify_af else None


def held_out_requests(cfg: TrainConfig, held_out: list[Request]) -> list[Request]:
    """The requests every eval asks: the first eval.n of the held-out split (check_splits refuses an eval.n larger
    than the split, so this never silently asks fewer)."""
    return held_out[: cfg.eval.n]


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
