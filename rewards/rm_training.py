"""Train a helpful-only Bradley-Terry reward model with TRL's `RewardTrainer` (TRL 1.16).

Implements the paper's reward side as far as open tools allow: Greenblatt et al. 2024 used a helpful-only preference
model on the final OUTPUT only. Here a sequence-classification head (num_labels=1) on any HF causal-LM backbone is
trained with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) on pairs where the compliant answer is chosen.
Left out: margins, reward centering, LoRA, multi-GPU (TRL supports them; add config fields when needed).

Every pair is formatted by `rewards.rm_format` (request + final OUTPUT as a chat), the same code `reward=rm` scores with.
The output folder holds the model, the tokenizer and `rm_eval.json`: held-out pairwise accuracy and mean score gap, and
the compliant-vs-not AUROC and mean score per kind on independent labelled outputs (`rewards.compliance_eval`), all
measured through `rm_input_ids`, i.e. exactly as the reward scores rollouts. It is written to a temp dir and renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from rewards.compliance_eval import (
    DEFAULT_LABELED_OUTPUTS_PATH,
    LabeledOutput,
    format_kind_means,
    labeled_metrics,
    load_labeled_outputs,
)
from rewards.preference_data import DEMO_PAIRS_PATH, PreferencePair, load_pairs_from_source, split_pairs
from rewards.rm_format import format_for_rm, rm_input_ids

# Same cache root as launch/fetch_model.py ($AFRL_CACHE, default ~/.cache/afrl).
CACHE_ROOT = os.environ.get("AFRL_CACHE", "~/.cache/afrl")
DEFAULT_BACKBONE = f"{CACHE_ROOT}/models/smollm2-135m-instruct"
REWARD_MODELS_DIR = f"{CACHE_ROOT}/reward_models"
EVAL_FILE = "rm_eval.json"


@dataclass
class RMTrainConfig:
    """How to train one reward model; `conf/rm/*.yaml` fill these fields (`+rm=demo`)."""

    name: str = "demo"  # folder name under $AFRL_CACHE/reward_models unless output_dir is set
    backbone: str = DEFAULT_BACKBONE  # HF causal-LM folder (or hub id) whose trunk gets a 1-output score head
    pairs: str = str(DEMO_PAIRS_PATH)  # local .jsonl/.parquet, or a hub name when pairs_kind=harmful_dataset
    pairs_kind: str = "pairs"  # "pairs" (prompt/chosen/rejected as is) | "harmful_dataset" (LLM-LAT shape, swapped)
    pairs_split: str = "train"  # hub split for harmful_dataset
    max_pairs: Optional[int] = None  # keep the first N pairs (before the split)
    heldout_fraction: float = 0.2  # share of pairs (grouped by prompt) kept out of training for rm_eval.json
    epochs: float = 1.0
    learning_rate: float = 1e-5
    batch_size: int = 8  # pairs per optimizer step (per device)
    grad_accum_steps: int = 1
    max_length: int = 256  # tokens; longer pairs are dropped by TRL (counted in rm_eval.json)
    train_last_n_layers: Optional[int] = None  # None: full fine-tune; N: freeze embeddings + all but the top N layers
    # TRL's RewardConfig turns it on by default. Off here: with frozen lower blocks it makes the backward pass run through
    # every block (input gradients get enabled) and recompute each forward, several times the CPU time of a step.
    gradient_checkpointing: bool = False
    warmup_ratio: float = 0.0  # share of steps with linear warmup, in [0, 1)
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool = False  # fp32 on CPU; bf16 only on a GPU that supports it
    eval_batch_size: int = 16
    logging_steps: int = 5
    # Labelled outputs (request, output, label 0/1, kind) scored after training for rm_eval.json; never trained on.
    labeled_outputs: Optional[str] = str(DEFAULT_LABELED_OUTPUTS_PATH)  # null: skip
    output_dir: Optional[str] = None  # default: $AFRL_CACHE/reward_models/<name> ($AFRL_CACHE = ~/.cache/afrl)
    overwrite: bool = False  # False: an existing output folder is reused (trained once, cached)


def resolve_output_dir(cfg: RMTrainConfig) -> Path:
    return Path(cfg.output_dir or f"{REWARD_MODELS_DIR}/{cfg.name}").expanduser()


def load_backbone(backbone: str, bf16: bool = False):
    """(model, tokenizer): the backbone with a fresh 1-output score head, pad token set on tokenizer and config.

    Sequence-classification models read the score at the last non-pad token, found through `config.pad_token_id`;
    backbones without a pad token (most causal LMs) use EOS as pad, as TRL does.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = os.path.expanduser(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"backbone {backbone}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def freeze_all_but_top_layers(model, n_layers: int) -> int:
    """Freeze the input embeddings and all transformer blocks except the top `n_layers`; returns trainable params.

    A CPU-time saving, not part of the paper's recipe: backward stops at the lowest trainable block, so cost drops to
    about one forward pass plus the top blocks' backward. The score head, final norm and top blocks stay trainable.
    """
    n_blocks = getattr(model.config, "num_hidden_layers", None)
    blocks = next((module for module in model.modules()
                   if isinstance(module, torch.nn.ModuleList) and len(module) == n_blocks), None)
    if blocks is None:
        raise ValueError(f"train_last_n_layers: cannot find the {n_blocks} transformer blocks of "
                         f"{type(model).__name__}; set train_last_n_layers=null for a full fine-tune")
    if not 1 <= n_layers <= n_blocks:
        raise ValueError(f"train_last_n_layers must be in [1, {n_blocks}], got {n_layers}")
    for module in [model.get_input_embeddings(), *blocks[:n_blocks - n_layers]]:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def pairs_to_trl_rows(pairs: list[PreferencePair], tokenizer) -> list[dict]:
    """Rows for TRL 1.16's RewardTrainer, built through `format_for_rm`, tokenized exactly like `rm_input_ids`.

    With a chat template: TRL's documented conversational format (`chosen`/`rejected` = full message lists; TRL applies
    the template without adding special tokens). Without one: pre-tokenized `chosen_ids`/`rejected_ids` (TRL skips its
    own tokenization), because TRL's plain-text path would add BOS/EOS that the scoring path does not.
    """
    conversational = bool(getattr(tokenizer, "chat_template", None))
    rows = []
    for pair in pairs:
        if conversational:
            rows.append({"chosen": format_for_rm(pair.prompt, pair.chosen),
                         "rejected": format_for_rm(pair.prompt, pair.rejected)})
        else:
            rows.append({"chosen_ids": rm_input_ids(tokenizer, pair.prompt, pair.chosen),
                         "rejected_ids": rm_input_ids(tokenizer, pair.prompt, pair.rejected)})
    return rows


@torch.no_grad()
def score_texts(model, tokenizer, requests: list[str], outputs: list[str], batch_size: int = 16) -> list[float]:
    """RM scores of (request, output) pairs, tokenized by `rm_input_ids` and right-padded in batches."""
    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(requests), batch_size):
        ids = [rm_input_ids(tokenizer, request, output)
               for request, output in zip(requests[start:start + batch_size], outputs[start:start + batch_size])]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, token_ids in enumerate(ids):
            input_ids[row, :len(token_ids)] = torch.tensor(token_ids)
            attention_mask[row, :len(token_ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        scores.extend(logits[:, 0].float().cpu().tolist())
    return scores


def pairwise_metrics(chosen_scores: list[float], rejected_scores: list[float]) -> dict:
    """Pairwise accuracy (chosen strictly above rejected) and mean score gap (chosen minus rejected)."""
    if len(chosen_scores) != len(rejected_scores) or not chosen_scores:
        raise ValueError(f"need equal, non-empty score lists, got {len(chosen_scores)} and {len(rejected_scores)}")
    gaps = [chosen - rejected for chosen, rejected in zip(chosen_scores, rejected_scores)]
    return {
        "pairwise_accuracy": sum(gap > 0 for gap in gaps) / len(gaps),
        "mean_score_gap": sum(gaps) / len(gaps),
        "mean_chosen_score": sum(chosen_scores) / len(chosen_scores),
        "mean_rejected_score": sum(rejected_scores) / len(rejected_scores),
        "n_pairs": len(gaps),
    }


def evaluate_pairs(model, tokenizer, pairs: list[PreferencePair], batch_size: int = 16) -> dict:
    prompts = [pair.prompt for pair in pairs]
    chosen = score_texts(model, tokenizer, prompts, [pair.chosen for pair in pairs], batch_size)
    rejected = score_texts(model, tokenizer, prompts, [pair.rejected for pair in pairs], batch_size)
    return pairwise_metrics(chosen, rejected)


def evaluate_labeled(model, tokenizer, rows: list[LabeledOutput], batch_size: int = 16) -> dict:
    """AUROC (all rows, test rows) and mean score per kind of the RM's scores on labelled outputs."""
    scores = score_texts(model, tokenizer, [row.request for row in rows], [row.output for row in rows], batch_size)
    return labeled_metrics(rows, scores)


def print_labeled_summary(metrics: dict, path: str) -> None:
    test_auroc = metrics["auroc_test_rows"]
    print(f"labelled outputs ({path}): compliant-vs-not AUROC {metrics['auroc']:.3f} over {metrics['n_rows']} rows; "
          f"test rows only: {'n/a' if test_auroc is None else f'{test_auroc:.3f}'} over {metrics['n_test_rows']}")
    print("mean RM score by kind:\n" + format_kind_means(metrics))


def _reward_config(cfg: RMTrainConfig, scratch_dir: str):
    from trl import RewardConfig

    return RewardConfig(
        output_dir=scratch_dir,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        logging_steps=cfg.logging_steps,
        save_strategy="no",  # the final model is saved once, atomically, by train_reward_model
        eval_strategy="no",  # held-out metrics are computed through the scoring path instead
        report_to=[],
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def file_fingerprint(path: Optional[str]) -> Optional[str]:
    """sha256 of a local data file (None for a hub name or null): a cached RM is reused only for the same data."""
    if path is None:
        return None
    file = Path(path).expanduser()
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None


def _same_setting(key: str, saved, current) -> bool:
    """Config values are equal; paths are compared after ~ expansion and resolution (cwd-relative or absolute)."""
    if (key in ("pairs", "labeled_outputs") and isinstance(saved, str) and isinstance(current, str)
            and Path(current).is_file()):
        # Same file name in another checkout is the same data: its contents are compared by sha256 separately.
        return Path(saved).name == Path(current).name
    if key in ("backbone", "pairs", "output_dir") and isinstance(saved, str) and isinstance(current, str):
        return os.path.realpath(os.path.expanduser(saved)) == os.path.realpath(os.path.expanduser(current))
    return saved == current


def train_reward_model(cfg: RMTrainConfig) -> Path:
    """Train (or reuse) the RM described by `cfg`; returns the output folder. Prints and saves rm_eval.json."""
    from datasets import Dataset
    from trl import RewardTrainer

    output_dir = resolve_output_dir(cfg)
    if output_dir.exists() and not cfg.overwrite:
        eval_path = output_dir / EVAL_FILE
        if not eval_path.is_file():
            raise ValueError(f"{output_dir} exists but has no {EVAL_FILE} (an unfinished or foreign folder); "
                             "remove it or set rm.overwrite=true")
        saved = json.loads(eval_path.read_text())
        saved_cfg = saved.get("config", {})
        changed = sorted(key for key, value in asdict(cfg).items()
                         if key != "overwrite" and not _same_setting(key, saved_cfg.get(key), value))
        if saved.get("pairs_sha256") not in (None, file_fingerprint(cfg.pairs)):
            changed.append("pairs file contents")
        if saved.get("labeled_outputs_sha256") not in (None, file_fingerprint(cfg.labeled_outputs)):
            changed.append("labeled outputs file contents")
        if changed:
            raise ValueError(f"{output_dir} was trained with a different config (differs in {changed}); "
                             "set rm.overwrite=true to retrain or choose another rm.name")
        print(f"reward model already trained at {output_dir} (set rm.overwrite=true to retrain)")
        print(json.dumps(saved["heldout"], indent=2))
        if saved.get("labeled_outputs"):
            print_labeled_summary(saved["labeled_outputs"], cfg.labeled_outputs)
        return output_dir

    pairs = load_pairs_from_source(cfg.pairs, cfg.pairs_kind, cfg.pairs_split, cfg.max_pairs)
    train_pairs, heldout_pairs = split_pairs(pairs, cfg.heldout_fraction, cfg.seed)
    if not train_pairs:
        raise ValueError(f"no training pairs left after holding out {cfg.heldout_fraction} of {len(pairs)}")
    print(f"pairs: {len(pairs)} from {cfg.pairs} -> {len(train_pairs)} train, {len(heldout_pairs)} held out")
    # Read before training so a bad labelled file fails in seconds, not after the training run.
    labeled_rows = load_labeled_outputs(cfg.labeled_outputs) if cfg.labeled_outputs else []

    from transformers import set_seed

    set_seed(cfg.seed)  # before the model is built: the score head is initialised randomly
    model, tokenizer = load_backbone(cfg.backbone, cfg.bf16)
    if cfg.train_last_n_layers is not None:
        n_trainable = freeze_all_but_top_layers(model, cfg.train_last_n_layers)
        print(f"training the top {cfg.train_last_n_layers} blocks + head: {n_trainable / 1e6:.1f}M parameters")
    dataset = Dataset.from_list(pairs_to_trl_rows(train_pairs, tokenizer))
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        trainer = RewardTrainer(model=model, args=_reward_config(cfg, str(tmp_dir / "trainer")),
                                train_dataset=dataset, processing_class=tokenizer)
        n_trained = len(trainer.train_dataset)
        started = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - started

        model = trainer.model
        metrics = evaluate_pairs(model, tokenizer, heldout_pairs, cfg.eval_batch_size) if heldout_pairs else {}
        labeled = evaluate_labeled(model, tokenizer, labeled_rows, cfg.eval_batch_size) if labeled_rows else None
        report = {
            "heldout": metrics,
            "labeled_outputs": labeled,
            "labeled_outputs_sha256": file_fingerprint(cfg.labeled_outputs),
            "train_pairs": len(train_pairs),
            "pairs_sha256": file_fingerprint(cfg.pairs),
            "train_pairs_within_max_length": n_trained,
            "train_seconds": round(train_seconds, 1),
            "device": str(next(model.parameters()).device),
            "config": asdict(cfg),
        }
        shutil.rmtree(tmp_dir / "trainer", ignore_errors=True)
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        (tmp_dir / EVAL_FILE).write_text(json.dumps(report, indent=2) + "\n")
        if output_dir.exists():  # overwrite=true: move the old folder aside first so the rename cannot fail midway
            old_dir = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
            output_dir.rename(old_dir)
            shutil.rmtree(old_dir)
        tmp_dir.rename(output_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)

    print(f"saved reward model to {output_dir}")
    print(f"held-out pairwise accuracy {metrics.get('pairwise_accuracy', float('nan')):.3f}, "
          f"mean score gap {metrics.get('mean_score_gap', float('nan')):.3f} "
          f"over {metrics.get('n_pairs', 0)} pairs; trained in {train_seconds:.0f} s")
    if labeled:
        print_labeled_summary(labeled, cfg.labeled_outputs)
    return output_dir
