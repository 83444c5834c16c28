"""The size of a model for the memory plan (rl/workers/memory_plan.py): parameter count, LoRA adapter parameters and
KV-cache bytes per token, counted from the shape in its HF config.json, or from `model.params_billion` without one.

Counting from the shape covers decoder-only transformers laid out like Llama, Mistral and Qwen2 (attention q/k/v/o,
a gated MLP gate/up/down, two norms per layer, a final norm, untied or tied embeddings, optional q/k/v biases as in
Qwen2). A config.json without those keys (an MoE, a multimodal wrapper) falls back to `model.params_billion`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# A LoRA adapter's size when the shape is unknown: rank x params / 3000. Counted exactly on the three presets with
# all-linear targets it is params x rank / 3070 (Llama-3-8B), / 3900 (Qwen2.5-32B), / 5450 (Llama-3-70B), so this
# over-counts (never under-counts) them; the adapter is under 1% of the model at rank 16 either way.
ADAPTER_PARAMS_PER_RANK_FRACTION = 1 / 3000

SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


class ModelSizeError(ValueError):
    pass


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, config: dict) -> Optional["ModelShape"]:
        """None when config.json lacks the keys of a Llama-like decoder."""
        config = config.get("text_config", config)
        if any(not isinstance(config.get(k), int) for k in SHAPE_KEYS):
            return None
        heads = config["num_attention_heads"]
        return cls(config["vocab_size"], config["hidden_size"], config["intermediate_size"],
                   config["num_hidden_layers"], heads, config.get("num_key_value_heads") or heads,
                   config.get("head_dim") or config["hidden_size"] // heads, bool(config.get("tie_word_embeddings")),
                   bool(config.get("attention_bias")) or config.get("model_type") == "qwen2")

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by its HF module name."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate), "down_proj": (self.intermediate, self.hidden)}

    def params(self) -> int:
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden  # + input/post-attn norms
        if self.qkv_bias:
            per_layer += (self.heads + 2 * self.kv_heads) * self.head_dim
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + embeddings + self.hidden  # + the final norm

    def lora_params(self, rank: int, target_modules: list[str]) -> int:
        """A rank-r adapter adds A (r x in) and B (out x r) to each targeted linear layer: r x (in + out) params.
        "all-linear" is PEFT's every linear layer but the output head."""
        shapes = self.linear_shapes()
        names = shapes if "all-linear" in target_modules else [n for n in shapes if n in target_modules]
        return self.layers * sum(rank * sum(shapes[n]) for n in names)

    def kv_bytes_per_token(self, bytes_per_value: int) -> int:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


@dataclass(frozen=True)
class ModelSize:
    params: int
    adapter_params: int  # trained LoRA parameters; 0 without LoRA
    shape: Optional[ModelShape]  # None when counted from model.params_billion
    source: str  # where the count comes from, for the plan's header

    @property
    def trained_params(self) -> int:
        return self.adapter_params or self.params


def read_config_json(path: str) -> Optional[dict]:
    """The config.json of a local model folder, else None (a hub id: the plan does not download anything)."""
    if not path:
        return None
    file = Path(os.path.expanduser(path), "config.json")
    return json.loads(file.read_text()) if file.is_file() else None


def model_size(path: str, params_billion: Optional[float], lora_rank: int = 0,
               lora_targets: tuple[str, ...] = ("all-linear",), what: str = "model") -> ModelSize:
    """Count from `path`'s config.json when it has a known shape, else from `params_billion`. `what` names the config
    section in errors (model, reward.rm)."""
    config = read_config_json(path)
    shape = ModelShape.from_config(config) if config else None
    if shape is not None:
        params, source = shape.params(), f"counted from {path}/config.json"
        adapter = shape.lora_params(lora_rank, list(lora_targets)) if lora_rank else 0
        return ModelSize(params, adapter, shape, source)
    if params_billion is None:
        reason = "has no config.json" if config is None else "has a config.json of an unknown layout"
        raise ModelSizeError(f"{what}.path={path!r} {reason}: set {what}.params_billion for the memory plan")
    params = int(round(params_billion * 1e9))
    adapter = int(params * lora_rank * ADAPTER_PARAMS_PER_RANK_FRACTION) if lora_rank else 0
    return ModelSize(params, adapter, None, f"{what}.params_billion={params_billion:g}")
