"""The shared prefix's keys/values as an HF cache that gradient-checkpointed decoder layers can use.

HF's checkpointed layers (`GradientCheckpointingLayer`) drop `past_key_values` unless the layer class declares that it
only reads the cache (`_can_checkpoint_with_cache`): a checkpointed layer runs its forward a second time during the
backward, and a `DynamicCache` would then append the same keys again. `PrefixCache.update` is safe to replay: it returns
prefix + new keys/values, stores them on a layer's first call only (the next forward of the prefix chain reads them),
and a replay gets the same concatenation of the same prefix tensors. `prefix_cache_kept` lets the layers keep the cache
for one forward.

Gradients reach the prefix because non-reentrant checkpointing (transformers' default) records the autograd graph in
the forward, including the edges to the prefix tensors captured in the layer's arguments, and only recomputes the
saved activations. Reentrant checkpointing runs the forward under no_grad and backpropagates only into the layer's
positional inputs, so the prefix would get no gradient: `check_checkpointing` refuses it.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

KeyValues = list[tuple[Tensor, Tensor]]


class PrefixCache(DynamicCache):
    """The keys/values of a prefix ([1, H, P, D] per layer, no copy), read by one forward of `num_layers` layers.

    `keep`: store prefix + this forward's keys/values (a forward that extends the prefix). A suffix forward keeps
    nothing: under checkpointing the layers' replay holds this cache until the backward, and stored suffix keys would
    outlive the forward there."""

    def __init__(self, past: KeyValues | None, num_layers: int, keep: bool):
        super().__init__()
        self.past, self.num_layers, self.keep = list(past or []), num_layers, keep
        self.layers = []  # filled with the prefix so that HF sizes the attention mask as prefix + queries
        for keys, values in self.past:
            layer = DynamicLayer()
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            self.layers.append(layer)
        self.read_by: set[int] = set()
        self.extended: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx < len(self.past):
            keys = torch.cat([self.past[layer_idx][0], key_states], dim=-2)
            values = torch.cat([self.past[layer_idx][1], value_states], dim=-2)
        else:
            keys, values = key_states, value_states
        if layer_idx not in self.read_by:  # the forward; a second call is a checkpointed layer's replay: store nothing
            self.read_by.add(layer_idx)
            if self.keep:
                self.extended[layer_idx] = (keys, values)
        return keys, values

    def check_read(self) -> None:
        """Raise unless every layer attended to the prefix."""
        missing = [index for index in range(self.num_layers) if index not in self.read_by]
        if missing:
            raise RuntimeError(f"layers {missing} of {self.num_layers} never read the shared prefix's cache: the model "
                               "dropped past_key_values (a decoder layer that is not a transformers "
                               "GradientCheckpointingLayer?); set trainer.prefix_sharing=false")

    def key_values(self) -> KeyValues:
        """Per layer, the prefix's keys/values followed by those of this forward's tokens (`keep`)."""
        self.check_read()
        return [self.extended[index] for index in range(self.num_layers)]


def num_decoder_layers(model) -> int:
    return model.config.get_text_config(decoder=True).num_hidden_layers


def _checkpointed_layers(model) -> list[GradientCheckpointingLayer]:
    return [module for module in model.modules()
            if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing]


@contextmanager
def prefix_cache_kept(model):
    """Checkpointed decoder layers of `model` keep `past_key_values` (a `PrefixCache`) inside this block."""
    changed = [layer for layer in _checkpointed_layers(model) if not layer._can_checkpoint_with_cache]
    for layer in changed:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer in changed:
            del layer._can_checkpoint_with_cache  # back to the class's False


def check_checkpointing(model) -> None:
    """Refuse reentrant gradient checkpointing, which would silently drop the shared prefix's gradient."""
    for layer in _checkpointed_layers(model):
        options = getattr(layer._gradient_checkpointing_func, "keywords", {})
        if options.get("use_reentrant", True):  # torch's checkpoint defaults to reentrant when not told
            raise ValueError(
                "prefix sharing with gradient checkpointing needs non-reentrant checkpointing (the prefix's "
                "keys/values reach the layers outside their positional inputs): call gradient_checkpointing_enable() "
                "without gradient_checkpointing_kwargs or with {'use_reentrant': False}, or set "
                "trainer.prefix_sharing=false")
