"""The `sft` Hydra node: how to fine-tune one causal LM (`python launch/sft.py +sft=<preset>`, presets in conf/sft/)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rewards.rm_training import CACHE_ROOT, DEFAULT_BACKBONE
from rollouts.config_check import check, one_of, positive
from rollouts.prompts import PREFILL_TEXT

SFT_DIR = f"{CACHE_ROOT}/sft"
# The project's own synthetic documents for synthetic document fine-tuning (paper section 4).
SYNTHETIC_DOCUMENTS_PATH = Path(__file__).parent / "documents" / "synthetic_documents.jsonl"
KINDS = ("documents", "transcripts")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


@dataclass
class SFTConfig:
    """One SFT run. Every field is part of the cache fingerprint except output_dir and overwrite."""

    name: str = "sdf_documents"  # folder name under $AFRL_CACHE/sft unless output_dir is set
    model: str = DEFAULT_BACKBONE  # base causal LM: an HF folder (or a hub id when the hub is reachable)
    kind: str = "documents"  # documents: LM loss on every token | transcripts: loss on assistant turns only
    data: str = str(SYNTHETIC_DOCUMENTS_PATH)  # local .jsonl/.parquet file, or a HF hub dataset name
    text_column: str = "text"  # documents: the column holding the text
    hf_split: str = "train"  # hub datasets only
    prefill: str = PREFILL_TEXT  # transcripts: a first assistant turn starting with it has it on the prompt side
    max_length: int = 512  # tokens; documents are cut into chunks this long, longer transcripts are dropped (counted)
    max_examples: Optional[int] = None  # keep the first N rows (before the held-out split)
    heldout_fraction: float = 0.1  # share of rows (by a hash of the row id or text) kept out for the held-out loss
    epochs: float = 1.0
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"  # one of LR_SCHEDULERS (transformers' names)
    warmup_ratio: float = 0.0  # share of steps with linear warmup, in [0, 1)
    batch_size: int = 8  # examples per micro-batch (per device)
    grad_accum_steps: int = 1
    train_last_n_layers: Optional[int] = None  # None: full fine-tune; N: freeze embeddings + all but the top N blocks
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool = False  # fp32 on CPU; bf16 only on a GPU that supports it
    eval_batch_size: int = 8  # held-out loss micro-batch
    logging_steps: int = 5
    output_dir: Optional[str] = None  # default: $AFRL_CACHE/sft/<name> ($AFRL_CACHE = ~/.cache/afrl)
    overwrite: bool = False  # True: retrain even when the folder holds a run with the same fingerprint

    def __post_init__(self) -> None:
        one_of("sft.kind", self.kind, KINDS)
        one_of("sft.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check(bool(self.name.strip()) and "/" not in self.name, "sft.name", self.name,
              "a folder name (non-empty, no '/')")
        check(self.max_length >= 2, "sft.max_length", self.max_length, "at least 2 tokens")
        check(self.max_examples is None or self.max_examples >= 1, "sft.max_examples", self.max_examples,
              "null or an int >= 1")
        for key in ("heldout_fraction", "warmup_ratio"):
            check(0.0 <= getattr(self, key) < 1.0, f"sft.{key}", getattr(self, key), "a share in [0, 1)")
        for key in ("epochs", "learning_rate"):
            positive(f"sft.{key}", getattr(self, key))
        for key in ("batch_size", "grad_accum_steps", "eval_batch_size", "logging_steps"):
            check(getattr(self, key) >= 1, f"sft.{key}", getattr(self, key), "an int >= 1")
        check(self.train_last_n_layers is None or self.train_last_n_layers >= 1, "sft.train_last_n_layers",
              self.train_last_n_layers, "null or an int >= 1")


def resolve_output_dir(cfg: SFTConfig) -> Path:
    return Path(os.path.expanduser(cfg.output_dir or f"{SFT_DIR}/{cfg.name}"))
