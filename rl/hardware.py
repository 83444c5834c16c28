"""Device auto-detection, in one place: the same config runs on a CPU laptop and on a GPU node."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    device: str  # cpu | cuda
    dtype: str  # float32 | bfloat16


def resolve_hardware(device: str = "auto", dtype: str = "auto") -> Hardware:
    """auto -> cuda when torch sees a GPU, else cpu; dtype auto -> bfloat16 on cuda, float32 on cpu."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("hardware.device=cuda but torch sees no GPU (use hardware.device=auto or cpu)")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return Hardware(device, dtype)
