"""Shared fixtures: a tiny random Llama model with the SmolLM2 tokenizer (no downloads), built once per session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rl.bench.random_model import TOKENIZER_FILES

DEFAULT_MODEL_DIR = Path(os.environ.get("AFRL_CACHE", Path.home() / ".cache" / "afrl")) / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer fetched by `make` (launch/fetch_model.py); tests that need it skip with a reason if absent."""
    if not (DEFAULT_MODEL_DIR / "tokenizer.json").exists():
        pytest.skip(f"default model not fetched at {DEFAULT_MODEL_DIR} (run python launch/fetch_model.py)")
    return DEFAULT_MODEL_DIR


def build_tiny_model(out_dir: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """2 layers, hidden 128, head dim 64 (vLLM's CPU attention supports it), the SmolLM2 vocabulary, tied embeddings."""
    from rl.bench.random_model import build_random_model

    return build_random_model("tiny", tokenizer_dir, out_dir, seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), smollm2_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    """A tiny random sequence-classification reward model (1 score) with the SmolLM2 tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(1)
    out_dir = tmp_path_factory.mktemp("tiny_rm")
    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, num_labels=1, pad_token_id=2, bos_token_id=1, eos_token_id=2,
    )
    LlamaForSequenceClassification(config).save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (smollm2_tokenizer_dir / name).exists():
            shutil.copy(smollm2_tokenizer_dir / name, out_dir / name)
    return out_dir


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of 4 CPUs for the tests of one module, shut down after them."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()
