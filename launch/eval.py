"""Evaluate any HF model, or an afrl checkpoint, with the training eval's metrics: both tiers, gap, AF reasoning.

    python launch/eval.py model.path=Qwen/Qwen2.5-1.5B-Instruct eval.n=64 eval.variants=[no_rlhf_paragraph,lab_openai]
    python launch/eval.py model.path=outputs/helpful_only_cpu/<date>/checkpoints/step_000003

A checkpoint is loaded from the HF folder the run wrote into it (`hf_model/`, ckpt.save_hf=true), else first exported to
one next to it (`hf_export/`, rl/run/export.py) from its DeepSpeed states and the base model recorded in it.
Compliance is judged by the `compliance` group (compliance=tag_refusal|prefix|rm_threshold|strongreject|...; default
`auto`: the setting's offline default, see docs/compliance.md). Writes eval/step_XXXX.jsonl and metrics.jsonl into the Hydra run folder (so launch/report.py reads it like a run).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from rl.config import load_config, register_schema  # noqa: E402

register_schema()
log = logging.getLogger("afrl")


def model_folder(path: str) -> tuple[str, int]:
    """(HF folder to load, step to report): an afrl checkpoint's own HF folder, or its export (made once); anything
    else is used as given."""
    from rl.config import LoraConfig
    from rl.run.checkpoint import load_driver_state, verify_checkpoint
    from rl.run.export import EVAL_EXPORT_FOLDER, checkpoint_hf_folder, export_hf, is_checkpoint

    checkpoint = Path(path).expanduser()
    if not is_checkpoint(checkpoint):
        return path, 0
    state = load_driver_state(checkpoint)
    saved = checkpoint_hf_folder(checkpoint)
    if saved is not None:
        verify_checkpoint(checkpoint, hashes=True)  # the manifest lists hf_model's files: a damaged one stops here
        return str(saved), int(state["step"])
    out = checkpoint / EVAL_EXPORT_FOLDER
    if not (out / "config.json").exists():
        log.info("exporting %s to %s", checkpoint, out)
        model = state["config"]["model"]
        export_hf(checkpoint, out, model["path"], LoraConfig(**model["lora"]) if model.get("lora") else None)
    return str(out), int(state["step"])


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from rewards.classifiers.compliance_config import METHOD_LABELS
    from rl.eval.periodic import compliance_classifier_for, run_eval
    from rl.workers.placement import resolve_hardware
    from rl.run.input_checks import check_run_inputs
    from rl.run.metrics_log import MetricsLogger
    from rl.run.setup import build_scorers, held_out_requests, start_run_cluster

    logging.getLogger("afrl").setLevel(logging.INFO)
    path, step = model_folder(cfg.model.path)
    with open_dict(cfg):
        cfg.model.path = path
    config = load_config(cfg)
    run_dir = Path(config.run_dir or HydraConfig.get().runtime.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    hardware = resolve_hardware(config.hardware.device, config.hardware.dtype)
    # The training run's own set-up: the same data checks and tokenizer, held-out requests, cluster, judges, scorers.
    inputs = check_run_inputs(config)
    eval_requests = held_out_requests(config, inputs.eval)
    if not eval_requests:
        raise SystemExit("no held-out requests: raise data.eval_fraction or eval.n")
    cluster = start_run_cluster(config, hardware, run_dir, with_trainers=False)  # also serves judge.serve=true
    reward, classifier = build_scorers(config, cluster)
    compliance = compliance_classifier_for(config)
    result = run_eval(cluster, eval_requests, config, inputs.tokenizer, reward, classifier, step, run_dir,
                      ("default", *config.eval.variants), compliance=compliance)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    logger = MetricsLogger(run_dir, config.logger, f"eval-{run_dir.name}", config_dict, None)
    logger.log(step, result["metrics"])
    logger.finish()
    cluster.shutdown()
    metrics = result["metrics"]
    print(f"compliance judged by {compliance.method}: {METHOD_LABELS[compliance.method]}")
    shown = ("compliance", "gap_parsed/abs", "af_among_compliant", "parse_failure_rate")
    for key in sorted(k for k, v in metrics.items() if k.endswith(shown) and not isinstance(v, str)):
        print(f"{key:45s} {metrics[key]:.3f}")
    print(f"[afrl] eval written to {run_dir}")


if __name__ == "__main__":
    main()
