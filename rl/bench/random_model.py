"""Random-initialised causal LMs of a named shape, saved as an HF folder beside a given tokenizer.

For nodes without hub access (a GPU node behind a firewall, CI): step time, tokens/s and MFU depend on the shape, not
on the weights' values, so the GPU bench can run on `qwen2.5-1.5b` built in place. What differs from the real model:
the vocabulary is the tokenizer's (SmolLM2's 49,152 rows by default, not Qwen's 151,936, so the 1.5B shape has 1.4B
parameters), and random weights rarely sample EOS, so every completion runs to max_new_tokens (the most work).

    python -m rl.bench.random_model --shape qwen2.5-1.5b --out /tmp/qwen-shape   # tokenizer: the default model's
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")

# Published configs (hidden, intermediate, layers, heads, kv heads); the vocabulary comes from the tokenizer.
SHAPES = {
    # 2 layers, hidden 128, head dim 64 (vLLM's CPU attention supports it): the test suite's model.
    "tiny": dict(arch="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=4096),
    "smollm2-135m": dict(arch="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3),
    "qwen2.5-0.5b": dict(arch="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b": dict(arch="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2),
}


class UnknownShapeError(ValueError):
    pass


def model_config(shape: str, vocab_size: int, bos_id: int, eos_id: int, max_positions: int = 32768):
    from transformers import LlamaConfig, Qwen2Config

    if shape not in SHAPES:
        raise UnknownShapeError(f"shape={shape!r} is not one of {sorted(SHAPES)}")
    spec = dict(SHAPES[shape])
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[spec.pop("arch")]
    spec.setdefault("max_position_embeddings", max_positions)
    return config_class(vocab_size=vocab_size, tie_word_embeddings=True, bos_token_id=bos_id, eos_token_id=eos_id,
                        pad_token_id=eos_id, **spec)


def build_random_model(shape: str, tokenizer_dir: str | Path, out_dir: str | Path, seed: int = 0,
                       dtype: str = "float32", device: str = "cpu") -> Path:
    """Build (initialised on `device`: a GPU draws 1.4B weights in a second), save (safetensors) and return
    `out_dir`; the tokenizer's files are copied beside the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer_dir, out_dir = Path(tokenizer_dir).expanduser(), Path(out_dir)
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise FileNotFoundError(f"tokenizer_dir={tokenizer_dir} has no tokenizer.json")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    config = model_config(shape, len(tokenizer), bos, eos)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out_dir / name)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    from rewards.rm_training import DEFAULT_BACKBONE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", default=DEFAULT_BACKBONE, help="folder holding tokenizer.json")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the weights are drawn (cpu | cuda)")
    args = parser.parse_args(argv)
    out = build_random_model(args.shape, args.tokenizer, args.out, args.seed, args.dtype, args.device)
    print(f"[random_model] {args.shape} -> {out}")


if __name__ == "__main__":
    main()
