"""Checkpoint files loaded without unpickling code: torch.load(weights_only=True), in afrl's loads and DeepSpeed's.

A checkpoint may come from someone else (`launch/eval.py model.path=<checkpoint>`, a copied run folder). A full
unpickle runs whatever the file tells it to, so every `.pt` file afrl reads goes through `safe_torch_load`: tensors,
plain containers and numbers, plus three DeepSpeed types its ZeRO optimizer files hold (`SAFE_DEEPSPEED_GLOBALS`:
plain data classes and an enum, rebuilt from their fields, running no code of the file's choosing).

DeepSpeed's own `engine.load_checkpoint` reads with `torch.load(weights_only=False)` (its TorchCheckpointEngine);
`use_safe_checkpoint_loading(engine)` makes that engine load through `safe_torch_load` instead.
The checkpoint manifest (sha256 of every file) is checked before a resume, but it proves integrity, not origin: whoever
can write the files can write the manifest. What keeps a shared checkpoint from running code is this module.
"""
from __future__ import annotations

import functools
import pickle

import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holding objects that loading it would have to run code for; the message names the file."""


def safe_deepspeed_globals() -> list:
    """The non-tensor types DeepSpeed 0.19 writes into ZeRO optimizer-state files: its loss scaler (a few floats), the
    fragment address of a parameter slice (two ints) and the ZeRO stage (an int enum)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, fragment_address, ZeroStageEnum]


def safe_torch_load(path, map_location=None, allow_deepspeed: bool = False):
    """torch.load(path, weights_only=True); `allow_deepspeed` also accepts `safe_deepspeed_globals()`. Anything else
    in the file raises UnsafeCheckpointError naming the file and the refused object, and nothing of it runs."""
    allowed = safe_deepspeed_globals() if allow_deepspeed else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line or "GLOBAL" in line),
                       str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it holds an object that is not a tensor or plain data ({refused[:300]}). afrl "
            "loads checkpoint files with torch.load(weights_only=True) only, since unpickling anything else can run "
            "code; use a checkpoint written by afrl, or one whose origin you trust after converting it yourself."
        ) from err


def use_safe_checkpoint_loading(engine) -> None:
    """Make a DeepSpeed engine's `load_checkpoint` read every file with `safe_torch_load` (it uses weights_only=False
    otherwise). Refuses an engine with another checkpoint engine, whose reads are not known to be pickle-free."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    current = engine.checkpoint_engine
    if getattr(current, "afrl_safe_loading", False):
        return
    if type(current) is not TorchCheckpointEngine:
        raise TypeError(f"DeepSpeed checkpoint engine {type(current).__name__}: afrl only loads checkpoints through "
                        "TorchCheckpointEngine, made safe here; remove the checkpoint-engine setting from the config")
    current.__class__ = _safe_engine_class()  # same layout, one method replaced: its settings stay as they are


def _safe_load(self, path: str, map_location=None):
    return safe_torch_load(path, map_location=map_location, allow_deepspeed=True)


@functools.cache
def _safe_engine_class():
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    return type("SafeTorchCheckpointEngine", (TorchCheckpointEngine,), {"load": _safe_load, "afrl_safe_loading": True})
