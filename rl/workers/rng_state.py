"""A process's RNG states (python `random`, numpy's global generator, torch CPU, every CUDA device) as plain JSON.

Checkpoints keep them in this form, not pickled, so that loading a checkpoint never runs code from it: the driver keeps
its states inside driver_state.json, each trainer rank in rng_rank<r>.json. Torch generator states are byte tensors,
stored as base64 text.
"""
from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import numpy as np
import torch

FORMAT = 1


class RNGStateError(ValueError):
    """An RNG state that cannot be restored; the message names the file (or object) and the field."""


def capture(cuda: bool = True) -> dict:
    """This process's RNG states as JSON-ready data; CUDA's only with `cuda` and a visible GPU (else None)."""
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    cuda_states = None
    if cuda and torch.cuda.is_available():
        cuda_states = [_bytes_to_text(s) for s in torch.cuda.get_rng_state_all()]
    return {
        "format": FORMAT,
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"bit_generator": name, "key": [int(k) for k in key], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": _bytes_to_text(torch.get_rng_state()),
        "cuda": cuda_states,
    }


def restore(state: dict, where: str) -> None:
    """Set this process's RNGs from `capture()`'s data. `where` names its source in errors. The CUDA states are set
    only when saved and a GPU is visible (a CPU resume of a GPU run keeps its CUDA generators as they are)."""
    py, npy = _field(state, "python", dict, where), _field(state, "numpy", dict, where)
    internal = tuple(_ints(_field(py, "internal", list, where, "python."), where, "python.internal"))
    gauss_next = py.get("gauss_next")
    if gauss_next is not None and not isinstance(gauss_next, (int, float)):
        raise RNGStateError(f"{where}: RNG state field python.gauss_next must be a number or null, got {gauss_next!r}")
    key = np.array(_ints(_field(npy, "key", list, where, "numpy."), where, "numpy.key"), dtype=np.uint32)
    numpy_state = (_field(npy, "bit_generator", str, where, "numpy."), key, _field(npy, "pos", int, where, "numpy."),
                   _field(npy, "has_gauss", int, where, "numpy."),
                   float(_field(npy, "cached_gaussian", (int, float), where, "numpy.")))
    torch_state = _text_to_bytes(_field(state, "torch", str, where), where, "torch")
    cuda_states = state.get("cuda")
    if cuda_states is not None and not isinstance(cuda_states, list):
        raise RNGStateError(f"{where}: RNG state field cuda must be a list or null, got {type(cuda_states).__name__}")
    try:
        random.setstate((_field(py, "version", int, where, "python."), internal, gauss_next))
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
    except (TypeError, ValueError, RuntimeError) as err:
        raise RNGStateError(f"{where}: RNG state rejected ({err})") from err
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_text_to_bytes(s, where, f"cuda[{i}]") for i, s in enumerate(cuda_states)])


def rank_file(directory: str | Path, rank: int) -> Path:
    """Where a checkpoint keeps trainer rank `rank`'s RNG states."""
    return Path(directory) / f"rng_rank{rank}.json"


def restore_file(path: Path) -> None:
    """Set this process's RNGs from the JSON state at `path` (errors name the file)."""
    restore(load(path), str(path))


def save(path: Path, state: dict | None = None) -> None:
    """Write `state` (default: this process's, CUDA included) as JSON to `path`."""
    Path(path).write_text(json.dumps(capture() if state is None else state) + "\n")


def load(path: Path) -> dict:
    """The JSON RNG state at `path` (restore it with `restore(state, str(path))`). A pickled `.pt` file of an older
    afrl next to it is named and refused: unpickling it could run code."""
    path = Path(path)
    if not path.is_file():
        legacy = path.with_suffix(".pt")
        if legacy.is_file():
            raise RNGStateError(
                f"{legacy}: RNG state in the old pickle format, which afrl no longer loads (unpickling can run code); "
                f"expected {path.name}. Resume from a checkpoint written by this version of afrl."
            )
        raise FileNotFoundError(f"{path}: RNG state file missing")
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RNGStateError(f"{path}: not a JSON RNG state ({err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise RNGStateError(f"{path}: RNG state field format must be {FORMAT}, got {found!r}")
    return state


def _field(tree: dict, name: str, kind, where: str, prefix: str = ""):
    if not isinstance(tree, dict) or name not in tree:
        raise RNGStateError(f"{where}: RNG state field {prefix}{name} is missing")
    value = tree[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RNGStateError(f"{where}: RNG state field {prefix}{name} has type {type(value).__name__}")
    return value


def _ints(values: list, where: str, name: str) -> list[int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise RNGStateError(f"{where}: RNG state field {name} must hold integers only")
    return values


def _bytes_to_text(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _text_to_bytes(text: str, where: str, name: str) -> torch.Tensor:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as err:
        raise RNGStateError(f"{where}: RNG state field {name} is not base64 ({err})") from err
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
