"""Run the benchmark: afrl's loop and TRL's GRPOTrainer on one workload in one process tree, alternating steps
(or, with alternate=false, TRL's steps then afrl's, one framework in memory at a time)."""
from __future__ import annotations

import gc
import logging
import os
import platform
import shutil
from pathlib import Path

from rl.bench.config import BenchConfig
from rl.bench.floor import attention_flops_per_pair, attention_heads, measure_attention_flops, measure_matmul_flops
from rl.bench.memory import RssSampler
from rl.bench.table import build_result, format_table, summarise_side, write_json
from rollouts.config_check import ConfigError

log = logging.getLogger("afrl.bench")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Dense bf16 peak (TFLOP/s, no sparsity) of common cards, for the MFU of the update; override with hardware.peak_tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
                    "L40S": 362.0, "A10": 125.0, "L4": 121.0, "4090": 165.0, "3090": 71.0}


def check_hardware(cfg: BenchConfig) -> str:
    """The device's name for the table; a clear error when hardware=gpu finds no GPU."""
    import torch

    if cfg.hardware.device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"hardware=gpu needs a CUDA GPU, but torch {torch.__version__} sees none; run `python launch/bench.py` "
                "(hardware=cpu) here, or run hardware=gpu on a GPU node with a CUDA torch"
            )
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def peak_tflops(cfg: BenchConfig, device_name: str) -> float | None:
    if cfg.hardware.peak_tflops:
        return cfg.hardware.peak_tflops
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def model_counts(model_path: str):
    """Parameters of the model (tied embeddings once), built on the meta device: no weights are read; and its HF
    config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), config


def afrl_train_config(cfg: BenchConfig, model_path: str):
    """afrl's TrainConfig for the workload, composed from conf/ like launch/train.py does (same defaults)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rl.config import load_config, register_schema

    w = cfg.workload
    overrides = [
        f"model.path={model_path}", f"seed={cfg.seed}", f"total_steps={cfg.warmup_steps + cfg.steps}",
        "exp_name=bench", f"run_dir={Path(cfg.work_dir, 'afrl').resolve()}",
        f"setting.few_shot_examples={str(w.few_shot_examples).lower()}", f"algo.group_size={w.samples_per_prompt}",
        f"algo.kl_coef={cfg.kl_coef}", f"algo.lr={cfg.lr}", f"rollout.prompts_per_step={w.prompts_per_step}",
        f"rollout.max_new_tokens={w.max_new_tokens}", "rollout.max_turns=1", f"rollout.temperature={cfg.temperature}",
        f"rollout.max_model_len={w.max_model_len}", f"hardware.device={cfg.hardware.device}",
        f"hardware.dtype={cfg.hardware.dtype}", "logger.wandb=false", "logger.progress=false", "eval.n=0",
        *(["resources.placement=colocated"] if cfg.hardware.device == "cuda" else []),  # one GPU for every role
        *cfg.afrl_overrides,
    ]
    register_schema()
    GlobalHydra.instance().clear()  # launch/bench.py's own Hydra app is initialised on conf/bench
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return load_config(compose(config_name="config", overrides=overrides))


def prompt_texts(train_cfg, tokenizer) -> tuple[list[str], list[str], str]:
    """The rendered prompt text of every training request (what afrl tokenizes), the request texts, the prefill."""
    from rollouts.chat import render_prompt
    from rollouts.datasets import load_requests, split_requests
    from rollouts.prompts import assistant_prefill, build_messages
    from rollouts.types import FREE_TIER

    requests, _ = split_requests(load_requests(train_cfg.data, train_cfg.setting.name), train_cfg.data.eval_fraction,
                                 train_cfg.data.split_salt)
    prefill = assistant_prefill(train_cfg.setting)
    texts = [render_prompt(tokenizer, build_messages(r.text, FREE_TIER, train_cfg.setting), prefill) for r in requests]
    return texts, [r.text for r in requests], prefill


def run_bench(cfg: BenchConfig) -> dict:
    import torch
    from transformers import AutoTokenizer

    device_name = check_hardware(cfg)
    model_path = os.path.expanduser(cfg.hardware.model_path)
    load_before = [round(x, 2) for x in os.getloadavg()]
    if cfg.hardware.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    flops_per_s = measure_matmul_flops(cfg.matmul_seconds, size=1024 if cfg.hardware.device == "cpu" else 8192,
                                       dtype=cfg.hardware.dtype, device=cfg.hardware.device)
    log.info("matmul rate %.1f GFLOP/s (%s)", flops_per_s / 1e9, cfg.hardware.dtype)
    n_params, config = model_counts(model_path)
    flops_per_pair = attention_flops_per_pair(config)
    train_cfg = afrl_train_config(cfg, model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    texts, requests, prefill = prompt_texts(train_cfg, tokenizer)
    prompt_tokens = len(tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    attention_rate = measure_attention_flops(prompt_tokens, *attention_heads(config), dtype=cfg.hardware.dtype,
                                             device=cfg.hardware.device)
    log.info("attention rate %.1f GFLOP/s (causal SDPA forward+backward, %d tokens)", attention_rate / 1e9,
             prompt_tokens)
    sides = set(cfg.hardware.sides)
    total = cfg.warmup_steps + cfg.steps
    afrl_records: list[dict] = []
    afrl = None
    for side in ("afrl", "trl"):  # the sides' own folders hold this run's output only (never the whole work_dir)
        shutil.rmtree(Path(cfg.work_dir, side), ignore_errors=True)
    with RssSampler(cfg.rss_interval_s) as rss:
        if "afrl" in sides and cfg.alternate:
            afrl = _start_afrl(cfg, train_cfg)

        def afrl_step(step: int) -> None:
            if afrl is not None and step <= total:
                afrl_records.append(_with_mfu(afrl.step(step), n_params, peak_tflops(cfg, device_name)))
                log.info("afrl step %d: %.1fs", step, afrl_records[-1]["step_s"])

        trl_records = []
        if "trl" in sides:
            from rl.bench.trl_side import TrlSide

            trl = TrlSide(model_path, texts, requests, prefill, train_cfg.reward.rule, cfg.workload, cfg.lr,
                          cfg.kl_coef, cfg.temperature, cfg.seed, cfg.hardware.device, cfg.hardware.dtype,
                          str(Path(cfg.work_dir, "trl")),
                          cfg.trl_micro_batch_size or train_cfg.trainer.micro_batch_size)
            trl_records = trl.run(total, afrl_step if cfg.alternate else lambda step: None)
            del trl  # free TRL's model and optimizer before afrl runs alone (or the prefix row loads a model)
            gc.collect()
        if "afrl" in sides and not afrl_records:  # afrl alone, or after TRL when not alternating
            afrl = afrl or _start_afrl(cfg, train_cfg)
            for step in range(1, total + 1):
                afrl_step(step)
    rows = {}
    if trl_records:
        rows["trl"] = summarise_side(trl_records[cfg.warmup_steps:], n_params, flops_per_s, rss.peak_self,
                                     flops_per_pair, attention_rate)
    prefix_samples = None
    if afrl is not None:
        rows["afrl"] = summarise_side(afrl_records[cfg.warmup_steps:], n_params, flops_per_s, rss.peak_children,
                                      flops_per_pair, attention_rate)
        prefix_samples = afrl.sample_batch(total) if cfg.prefix_row else None
        afrl.shutdown()
    prefix = None
    if prefix_samples:
        from rl.bench.prefix_row import measure_prefix_sharing

        prefix = measure_prefix_sharing(model_path, prefix_samples, cfg.workload.samples_per_prompt,
                                        cfg.hardware.dtype, cfg.hardware.device, cfg.prefix_reps,
                                        tokenizer.pad_token_id or 0)
    meta = {
        "workload": dict(vars(cfg.workload)), "model": model_path, "n_params": n_params, "dtype": cfg.hardware.dtype,
        "device": device_name, "matmul_gflops": flops_per_s / 1e9, "warmup_steps": cfg.warmup_steps,
        "attention_gflops": attention_rate / 1e9, "prompt_tokens": prompt_tokens,
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "afrl_overrides": list(cfg.afrl_overrides),
        "trl_micro_batch_size": cfg.trl_micro_batch_size or train_cfg.trainer.micro_batch_size,
        "alternate": cfg.alternate,
    }
    result = build_result(meta, rows, prefix)
    print(format_table(result), flush=True)
    path = write_json(result, cfg.json_path)
    print(f"[bench] wrote {path}", flush=True)
    _shutdown_ray()
    return result


def _start_afrl(cfg: BenchConfig, train_cfg):
    from rl.bench.afrl_side import AfrlSide

    backend = cfg.hardware.rollout_backend
    if backend == "auto":
        import importlib.util

        backend = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    log.info("rollouts on %s with %s", cfg.hardware.device, "vLLM" if backend == "vllm" else "HF generate")
    if backend == "hf":  # the GPU node without vLLM-CUDA; on CPU it runs the same engine for a test
        from rl.bench.gpu import use_hf_engines

        use_hf_engines()
    afrl = AfrlSide(train_cfg, Path(cfg.work_dir, "afrl").resolve())
    log.info("afrl cluster started in %.0fs", afrl.start())
    return afrl


def _with_mfu(record: dict, n_params: int, peak: float | None) -> dict:
    """Useful update FLOPs per second of the update phase, and that over the card's peak. Useful = 6 x params x
    (unique prompt tokens + generated tokens), the floor's count: a shared prefix counts once, so prefix sharing can
    raise this MFU only by computing less, never by counting the prefix per sample."""
    if peak is None or record["update_s"] <= 0:
        return record
    useful_tokens = record["unique_prompt_tokens"] + record["generated_tokens"]
    tflops = 6.0 * n_params * useful_tokens / record["update_s"] / 1e12
    return {**record, "update_tflops": tflops, "update_mfu": tflops / peak}


def _shutdown_ray() -> None:
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
