"""afrl's Hydra entry point: `python launch/train.py +exp=helpful_only [key=value ...]`.

Composes conf/ into the typed TrainConfig (rl/config.py), validates it, and runs the RL loop (rl/loop.py).
Sweeps: `python launch/train.py -m +exp=helpful_only algo.kl_coef=0,0.05 seed=1,2`. Resume: relaunch the same command
(`resume=auto`, the default, continues the run folder's checkpoint), `resume=true` (newest run of the experiment) or
`resume=PATH` (a run folder or checkpoint); rl/run/resume.py. SIGTERM/SIGUSR1/SIGUSR2 stop the run after the current
step with a checkpoint and exit status 75 (rl/run/preemption.py).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

# Engines are spawned processes (vLLM); keep noisy libraries quiet unless asked, before they are imported.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl.run import preemption  # noqa: E402
from rl.config import load_config, register_schema  # noqa: E402
from rl.run.folder import log_failure_to_files, log_to_file  # noqa: E402
from rl.workers.memory_plan import config_plan_report  # noqa: E402
from rl.run.slurm_ray import is_idle_task  # noqa: E402
from rollouts.prompts import system_prompt_file_sha256  # noqa: E402

register_schema()
log = logging.getLogger("afrl")


def sweep_group(exp_name: str) -> str | None:
    """In a multirun every job's W&B run joins one group named after the sweep, so they plot together."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{exp_name}-{Path(hydra_cfg.sweep.dir).name}"


def sft_first(config) -> str:
    """Fine-tune model.path with the `sft` section (reused when cached) and return the folder RL starts from."""
    from rl.run.repo_paths import resolve_repo_path
    from rl.sft.training import train_sft

    config.sft.data = resolve_repo_path(config.sft.data)
    print(f"[afrl] SFT before RL: {config.sft.kind} from {config.sft.data} on {config.sft.model}", flush=True)
    return str(train_sft(config.sft))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    if is_idle_task():  # launcher=slurm_multinode: this node's part of the job is Ray's, task 0 drives the run
        return
    log.setLevel(logging.INFO)
    preemption.install()  # before Ray or any other child process starts: they inherit the blocked USR1/USR2
    try:
        run(cfg)
    except preemption.Preempted as stop:
        log.warning("%s; exit status %d: relaunch the same command to continue (resume=auto)", stop,
                    preemption.PREEMPTED_EXIT_CODE)
        preemption.chain_previous_handler()  # under hydra-submitit-launcher: submitit requeues the job
        raise
    except BaseException as error:  # the traceback goes to the run folder's train.log, not only to the terminal
        log_failure_to_files(error)
        raise


def run(cfg: DictConfig) -> None:
    from rl.run.resume import plan_resume, target_run_dir
    from rl.run.folder import RunLock

    if cfg.logger.group is None:
        cfg.logger.group = sweep_group(cfg.exp_name)
    run_dir = Path(cfg.run_dir or HydraConfig.get().runtime.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(run_dir)  # Hydra's own train.log is elsewhere when a sweep job sets run_dir
    config = load_config(cfg)
    target = target_run_dir(config.resume, run_dir, config.exp_name)  # where a resume writes: its checkpoint's run
    log_to_file(target)
    lock = None if config.dry_run else RunLock(target).acquire()
    # Decided once, under the lock (no writer adds checkpoints now): set-up starts from exactly this plan.
    plan = plan_resume(config.resume, run_dir, config.exp_name)
    log.info("%s (run folder %s)", plan.message, plan.run_dir)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if config.sft is not None and not config.dry_run:
        config_dict["model"]["path"] = config.model.path = sft_first(config)
    info = {"exp_name": config.exp_name, "model": config.model.path, "wandb_group": config.logger.group,
            "overrides": list(HydraConfig.get().overrides.task)}
    if config.setting.system_prompt_file is not None:  # the prompt is the user's file: record which text it was
        info["system_prompt_file"] = config.setting.system_prompt_file
        info["system_prompt_sha256"] = system_prompt_file_sha256(config.setting)
    info["memory_plan"], plan_text = config_plan_report(config)  # GPU memory per role (rl/workers/memory_plan.py)
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=1) + "\n")
    log.info("%s", plan_text)
    if config.dry_run:  # the data and every prompt's length are checked too: a dry run passes only what a run would
        from rl.run.input_checks import check_run_inputs

        print(f"[afrl] {plan_text}", flush=True)  # first: it needs no data or tokenizer (a hub id is enough)
        print(f"[afrl] dry run: config valid, {check_run_inputs(config).describe()}, run folder {plan.run_dir}; "
              f"{plan.message}")
        return
    if already_complete(plan.checkpoint, config.total_steps):
        print(f"[afrl] run already complete: {plan.checkpoint} is step {config.total_steps} or later (raise "
              "total_steps to continue it)")
        return
    from rl.loop import train

    try:
        final_dir = train(config, plan, config_dict)
    finally:
        lock.release()
    print(f"[afrl] run finished: {final_dir}")


def already_complete(checkpoint: Path | None, total_steps: int) -> bool:
    """A checkpoint at or past total_steps whose eval is not pending: relaunching a finished job does nothing."""
    if checkpoint is None:
        return False
    from rl.run.checkpoint import COMPLETE, load_driver_state

    if int((checkpoint / COMPLETE).read_text().strip()) < total_steps:
        return False
    return not load_driver_state(checkpoint).get("eval_pending")


if __name__ == "__main__":
    main()
