"""The `sft` Hydra node: how to fine-tune one causal LM (`python launch/sft.py +sft=<preset>`, presets in conf/sft/)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rewards.rm_training import CACHE_ROOT, DEFAULT_BACKBONE
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
        if self.kind not in KINDS:
            raise ValueError(f"sft.kind must be one of {KINDS}, got {self.kind!r}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"sft.lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        if not self.name.strip() or "/" in self.name:
            raise ValueError(f"sft.name must be a folder name (non-empty, no '/'), got {self.name!r}")
        if self.max_length < 2:
            raise ValueError(f"sft.max_length must be at least 2 tokens, got {self.max_length}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"sft.max_examples must be positive or null, got {self.max_examples}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"sft.heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"sft.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for key in ("epochs", "learning_rate"):
            if getattr(self, key) <= 0:
                raise ValueError(f"sft.{key} must be positive, got {getattr(self, key)}")
        for key in ("batch_size", "grad_accum_steps", "eval_batch_size", "logging_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"sft.{key} must be at least 1, got {getattr(self, key)}")
        if self.train_last_n_layers is not None and self.train_last_n_layers < 1:
            raise ValueError(f"sft.train_last_n_layers must be positive or null, got {self.train_last_n_layers}")


def resolve_output_dir(cfg: SFTConfig) -> Path:
    return Path(os.path.expanduser(cfg.output_dir or f"{SFT_DIR}/{cfg.name}"))
