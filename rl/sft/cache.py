"""The SFT output folder as a content cache: a fingerprint of data + config + base model, and an atomic publish."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from rl.sft.config import SFTConfig
from rl.sft.data import SFTDataError, is_local_source

INFO_FILE = "sft_info.json"
PLANTED_RATES_FILE = "planted_rates.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Bump when the way rows become token ids + masks changes: a folder trained under another layout is retrained.
EXAMPLES_LAYOUT_VERSION = 1
# Not part of what was trained: where it goes, whether to redo it. The data and model paths are replaced by their
# contents (a moved checkout or a copied model folder is the same training).
_UNHASHED_KEYS = ("output_dir", "overwrite", "data", "model")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_identity(cfg: SFTConfig) -> dict:
    """Local file: sha256 of its bytes (and of a planted_rates.json beside it); hub dataset: its name and split."""
    if is_local_source(cfg.data):
        path = Path(cfg.data).expanduser()
        if not path.is_file():
            raise SFTDataError(f"{path}: no such file (sft.data)")
        identity = {"file_sha256": _sha256_file(path)}
        planted = path.parent / PLANTED_RATES_FILE
        if planted.is_file():
            identity["planted_rates_sha256"] = _sha256_file(planted)
        return identity
    return {"hub_dataset": cfg.data, "split": cfg.hf_split}


def model_identity(model: str) -> dict:
    """A local model folder: its small files' sha256 (config.json, tokenizer, chat template) and its weight files'
    names and sizes (hashing GBs of weights on every launch would cost more than it protects); a hub id: the id."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        if model.startswith((".", "/", "~")):
            raise ValueError(f"sft.model={model}: no such model folder (the default model is fetched by "
                             "python launch/fetch_model.py)")
        return {"hub_model": model}
    if not (folder / "config.json").is_file():
        raise ValueError(f"sft.model={model}: the folder has no config.json (not an HF model folder)")
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        files[name] = f"size:{path.stat().st_size}" if path.suffix in WEIGHT_SUFFIXES else _sha256_file(path)
    return {"files": files}


def fingerprint(cfg: SFTConfig) -> str:
    """sha256 over the data's identity, the config (minus _UNHASHED_KEYS), the base model's identity and the layout."""
    config = {key: value for key, value in asdict(cfg).items() if key not in _UNHASHED_KEYS}
    payload = {"data": data_identity(cfg), "config": config, "model": model_identity(cfg.model),
               "layout": EXAMPLES_LAYOUT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cached_info(output_dir: Path) -> dict | None:
    """The saved sft_info.json of a finished run, None when the folder does not exist.

    A folder without one is not ours (or not finished): it is never replaced silently.
    """
    if not output_dir.exists():
        return None
    info_path = output_dir / INFO_FILE
    if not info_path.is_file():
        raise ValueError(f"{output_dir} exists but has no {INFO_FILE} (not an SFT output folder); remove it or "
                         "choose another sft.output_dir")
    return json.loads(info_path.read_text())


def copy_planted_rates(cfg: SFTConfig, folder: Path) -> bool:
    """Copy planted_rates.json from beside a local data file into `folder`, unchanged; whether there was one."""
    if not is_local_source(cfg.data):
        return False
    planted = Path(cfg.data).expanduser().parent / PLANTED_RATES_FILE
    if planted.is_file():
        shutil.copyfile(planted, folder / PLANTED_RATES_FILE)
        return True
    return False


def publish(tmp_dir: Path, output_dir: Path) -> None:
    """Rename the finished `tmp_dir` to `output_dir`, replacing an old run, so `output_dir` is never half-written
    (the old folder is moved aside first, then deleted)."""
    old_dir = None
    if output_dir.exists():
        old_dir = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        output_dir.rename(old_dir)
    tmp_dir.rename(output_dir)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
