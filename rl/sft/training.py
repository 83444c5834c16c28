"""Fine-tune a causal LM with TRL 1.16's SFTTrainer on pre-tokenized examples; the output folder is a content cache.

The dataset handed to TRL holds `input_ids` and `assistant_masks` (rl.sft.examples). TRL's dataset preparation turns
`assistant_masks` into labels (-100 where the mask is 0) for any pre-tokenized dataset, whatever `assistant_only_loss`
says, and its loss averages -log p over the labelled tokens only. The held-out loss before and after training is
computed by rl.sft.heldout on the same masks. The training loss is TRL's, with the LM head on the labelled positions
only (rl.sft.masked_head), and saved with the config, data fingerprint and timings in sft_info.json.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from rewards.rm_training import freeze_all_but_top_layers
from rl.sft.cache import INFO_FILE, cached_info, copy_planted_rates, fingerprint, publish
from rl.sft.config import SFTConfig, resolve_output_dir
from rl.sft.data import load_source_rows, split_heldout
from rl.sft.examples import BuiltExamples, Example, build_examples
from rl.sft.heldout import mean_token_loss
from rl.sft.masked_head import masked_head_sft_trainer_class

MASK_COLUMN = "assistant_masks"  # the mask column TRL 1.16 always folds into the labels of a pre-tokenized dataset


def trl_rows(examples: list[Example]) -> list[dict]:
    return [{"input_ids": list(example.input_ids), MASK_COLUMN: list(example.loss_mask)} for example in examples]


def trl_config(cfg: SFTConfig, scratch_dir: str):
    from trl import SFTConfig as TRLSFTConfig

    return TRLSFTConfig(
        output_dir=scratch_dir,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,  # examples are already within it (chunked or dropped); TRL's cut is a no-op
        packing=False,
        completion_only_loss=False,  # the loss mask travels in MASK_COLUMN
        assistant_only_loss=False,  # True would make TRL re-render conversations with its own template
        gradient_checkpointing=False,  # TRL's default is True: recomputation costs CPU time a small model does not need
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        logging_steps=cfg.logging_steps,
        save_strategy="no",  # the final model is saved once, atomically, by train_sft
        eval_strategy="no",  # the held-out loss is computed by rl.sft.heldout instead
        report_to=[],
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def load_model_and_tokenizer(model_path: str, bf16: bool = False):
    """(model, tokenizer); a tokenizer without a pad token pads with EOS (padding is never a target)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = os.path.expanduser(model_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"sft.model={model_path}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    return model, tokenizer


def _print_build_summary(name: str, built: BuiltExamples, max_length: int) -> None:
    print(f"{name}: {built.n_rows} rows -> {len(built.examples)} examples, "
          f"{sum(e.n_loss_tokens for e in built.examples)} trained tokens")
    if built.n_documents_chunked:
        print(f"  {built.n_documents_chunked} documents longer than max_length={max_length} were cut into chunks")
    if built.dropped_too_long:
        shown = "; ".join(built.dropped_too_long[:5]) + (" ..." if len(built.dropped_too_long) > 5 else "")
        print(f"  dropped {len(built.dropped_too_long)} transcripts longer than max_length={max_length}: {shown}")


def _reuse(output_dir: Path, info: dict) -> Path:
    print(f"SFT model already trained at {output_dir} (same fingerprint; set sft.overwrite=true to retrain)")
    heldout = info.get("heldout_loss", {})
    print(f"held-out loss before {heldout.get('before')}, after {heldout.get('after')}")
    return output_dir


def train_sft(cfg: SFTConfig) -> Path:
    """Train (or reuse) the SFT model described by `cfg`; returns the output folder (an HF model folder)."""
    timings, started = {}, time.monotonic()
    output_dir = resolve_output_dir(cfg)
    if output_dir.resolve() == Path(cfg.model).expanduser().resolve():
        raise ValueError(f"sft.output_dir {output_dir} is the base model's folder; choose another")
    current = fingerprint(cfg)
    info = cached_info(output_dir)
    if info is not None and info.get("fingerprint") == current and not cfg.overwrite:
        return _reuse(output_dir, info)
    if info is not None:
        reason = "sft.overwrite=true" if info.get("fingerprint") == current else "data, config or base model changed"
        print(f"retraining {output_dir} ({reason})")

    rows = load_source_rows(cfg.data, cfg.kind, cfg.text_column, cfg.hf_split, cfg.max_examples)
    train_rows, heldout_rows = split_heldout(rows, cfg.heldout_fraction)
    from transformers import set_seed

    set_seed(cfg.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.bf16)
    train_built = build_examples(tokenizer, train_rows, cfg.kind, cfg.max_length, cfg.prefill)
    heldout_built = build_examples(tokenizer, heldout_rows, cfg.kind, cfg.max_length, cfg.prefill)
    _print_build_summary("train", train_built, cfg.max_length)
    _print_build_summary("held out", heldout_built, cfg.max_length)
    if not train_built.examples:
        raise ValueError(f"{cfg.data}: no training examples left (all {train_built.n_rows} rows dropped or held out)")
    if cfg.train_last_n_layers is not None:
        n_trainable = freeze_all_but_top_layers(model, cfg.train_last_n_layers)
        print(f"training the top {cfg.train_last_n_layers} blocks + final norm: {n_trainable / 1e6:.1f}M parameters")
    timings["prepare_s"] = time.monotonic() - started

    heldout = heldout_built.examples
    pad_id = tokenizer.pad_token_id
    clock = time.monotonic()
    before = mean_token_loss(model, heldout, pad_id, cfg.eval_batch_size) if heldout else None
    timings["heldout_before_s"] = time.monotonic() - clock

    from datasets import Dataset

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        trainer = masked_head_sft_trainer_class()(
            model=model, args=trl_config(cfg, str(tmp_dir / "trainer")),
            train_dataset=Dataset.from_list(trl_rows(train_built.examples)), processing_class=tokenizer)
        clock = time.monotonic()
        trainer.train()
        timings["train_s"] = time.monotonic() - clock
        steps = trainer.state.global_step
        timings["seconds_per_step"] = timings["train_s"] / max(steps, 1)
        model = trainer.model
        clock = time.monotonic()
        after = mean_token_loss(model, heldout, pad_id, cfg.eval_batch_size) if heldout else None
        timings["heldout_after_s"] = time.monotonic() - clock

        shutil.rmtree(tmp_dir / "trainer", ignore_errors=True)
        model.save_pretrained(tmp_dir)  # safetensors, config.json, generation_config.json
        tokenizer.save_pretrained(tmp_dir)  # with the chat template
        planted = copy_planted_rates(cfg, tmp_dir)
        timings["total_s"] = time.monotonic() - started
        report = {
            "fingerprint": current,
            "heldout_loss": {
                "method": "mean next-token cross-entropy (nats) over loss-masked tokens of the held-out examples",
                "before": before["loss"] if before else None, "after": after["loss"] if after else None,
                "n_examples": len(heldout), "n_tokens": before["n_tokens"] if before else 0,
            },
            "data": {"source": cfg.data, "rows": len(rows), "train_rows": len(train_rows),
                     "heldout_rows": len(heldout_rows), "train_examples": len(train_built.examples),
                     "train_tokens": sum(e.n_loss_tokens for e in train_built.examples),
                     "dropped_too_long": train_built.dropped_too_long + heldout_built.dropped_too_long,
                     "planted_rates_copied": planted},
            "optimizer_steps": steps,
            "timings": {key: round(value, 2) for key, value in timings.items()},
            "device": str(next(model.parameters()).device),
            "config": asdict(cfg),
        }
        (tmp_dir / INFO_FILE).write_text(json.dumps(report, indent=2) + "\n")
        publish(tmp_dir, output_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)

    print(f"saved SFT model to {output_dir} ({steps} optimizer steps in {timings['train_s']:.0f} s, "
          f"{timings['seconds_per_step']:.2f} s/step)")
    if before is not None:
        print(f"held-out loss ({len(heldout)} examples, {before['n_tokens']} tokens): "
              f"before {before['loss']:.4f} -> after {after['loss']:.4f}")
    else:
        print("no held-out examples (sft.heldout_fraction=0): no held-out loss")
    return output_dir
