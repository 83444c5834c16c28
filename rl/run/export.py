"""Turn an afrl checkpoint into a plain HF model folder (what vLLM, transformers and launch/eval.py load).

A checkpoint may come from someone else: its files are checked against its manifest and read without unpickling
(rl/workers/safe_load.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from rl.run.checkpoint import verify_checkpoint
from rl.workers.safe_load import safe_torch_load


def export_hf(checkpoint: Path, out_dir: Path, base_model_path: str) -> Path:
    """Base model's config + tokenizer, the checkpoint's trained weights (DeepSpeed rank-0 module states)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    states_file = Path(checkpoint) / "deepspeed" / "mp_rank_00_model_states.pt"
    if not states_file.exists():
        raise FileNotFoundError(f"{checkpoint}: no DeepSpeed module states at {states_file}")
    verify_checkpoint(checkpoint, hashes=True)  # a damaged or edited file stops here, named
    # weights_only: the file is tensors and plain data (DeepSpeed's module states hold no other objects); a file with
    # anything else is refused, naming it, before any of it runs.
    states = safe_torch_load(states_file, map_location="cpu")
    state = states.get("module") if isinstance(states, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{states_file}: no 'module' state dict (found {type(state).__name__})")
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise ValueError(f"{states_file}: weights do not fit {base_model_path} (missing {missing}, unexpected {unexpected})")
    tmp = Path(f"{out_dir}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_model_path).save_pretrained(tmp)
    if Path(out_dir).exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return Path(out_dir)


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / "COMPLETE").exists() and (Path(path) / "deepspeed").is_dir()
