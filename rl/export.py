"""Turn an afrl checkpoint into a plain HF model folder (what vLLM, transformers and launch/eval.py load)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch


def export_hf(checkpoint: Path, out_dir: Path, base_model_path: str) -> Path:
    """Base model's config + tokenizer, the checkpoint's trained weights (DeepSpeed rank-0 module states)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    states_file = Path(checkpoint) / "deepspeed" / "mp_rank_00_model_states.pt"
    if not states_file.exists():
        raise FileNotFoundError(f"{checkpoint}: no DeepSpeed module states at {states_file}")
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    state = torch.load(states_file, map_location="cpu", weights_only=False)["module"]
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
