"""LoRA policies and critics (PEFT): what changes for a learner whose `model.lora.rank > 0`.

- Training: `wrap` puts PEFT LoRA adapters on the model and freezes the base; DeepSpeed is handed the trainable
  parameters only (rl/workers/learner.py `DeepSpeedLearner.start`), so the optimizer state is the adapters' alone.
- Reference: the base with the adapters switched off (`adapters_off`, PEFT's `disable_adapter`), so a KL penalty needs
  no second copy of the model. The base weights never train, so this is exactly the initial policy at every step.
- Engines: `hf_weights` yields the weights vLLM loads, HF-named, with each adapter's delta merged in (W + s * B @ A),
  computed beside the live model, which is never modified (no merge_and_unload). Loading the adapter itself into vLLM
  (its LoRA support) would send less, but its CPU build may not have it; merged weights work with every engine.
- Checkpoints: `checkpoint_adapters_only` makes the engine's checkpoint hold the trainable tensors only (adapters, and
  a critic's value head); a resume loads them over the base read from model.path (`load_trainable_state`).

The critic follows the same `model.lora` settings (as OpenRLHF's --lora_rank): its backbone gets adapters, its value
head stays fully trainable.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Iterator

import torch

ADAPTER = "default"  # PEFT's name for the one adapter a model has
ALL_LINEAR = "all-linear"


def enabled(lora) -> bool:
    """Whether `lora` (a rl.config.LoraConfig, or None) asks for adapters."""
    return lora is not None and lora.rank > 0


def peft_config(lora, task_type: str | None):
    """PEFT's LoraConfig for a `model.lora` section. `target_modules` is a list of module names (PEFT matches the end of
    each module's name) or ["all-linear"]: every linear layer but the output head."""
    from peft import LoraConfig

    targets = list(lora.target_modules)
    if ALL_LINEAR in targets and len(targets) > 1:
        raise ValueError(f"model.lora.target_modules: {targets} mixes {ALL_LINEAR!r} with module names; give either "
                         f"[{ALL_LINEAR!r}] or a list of names")
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else targets, bias="none",
                      task_type=task_type)


def wrap(model: torch.nn.Module, lora, task_type: str | None = "CAUSAL_LM") -> torch.nn.Module:
    """`model` with LoRA adapters (the base frozen); `model` itself when `lora` asks for none. `task_type` None for a
    backbone without a head (the critic's AutoModel)."""
    if not enabled(lora):
        return model
    from peft import get_peft_model

    try:
        wrapped = get_peft_model(model, peft_config(lora, task_type))
    except ValueError as err:  # e.g. a module name that matches nothing in this architecture
        raise ValueError(f"model.lora.target_modules={list(lora.target_modules)}: {err}") from err
    return wrapped


def is_peft(module: torch.nn.Module) -> bool:
    return hasattr(module, "disable_adapter") and hasattr(module, "peft_config")


def adapters_off(module: torch.nn.Module):
    """Context in which a PEFT model computes with its base weights only (a no-op context for any other model)."""
    return module.disable_adapter() if is_peft(module) else nullcontext()


# ---- merged HF weights --------------------------------------------------------------------------------------------
def _lora_layers(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """PEFT LoRA layers by their module name."""
    from peft.tuners.lora import LoraLayer

    return {name: layer for name, layer in module.named_modules() if isinstance(layer, LoraLayer)}


def hf_name(peft_name: str) -> str:
    """The HF name of a PEFT-wrapped parameter: without the `base_model.model.` prefix and the `.base_layer` level."""
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


def is_adapter_tensor(peft_name: str) -> bool:
    return any(f".{part}." in peft_name for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B",
                                                     "lora_magnitude_vector"))


@torch.no_grad()
def hf_weights(module: torch.nn.Module, sharded: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) of every weight an engine or a plain HF model loads: a plain model's weights as they are; for a
    PEFT model each adapted weight is W + scaling * B @ A (new tensors, one layer at a time; the live model is left
    as it is) and the adapters' own tensors are left out. `sharded` (ZeRO-3): gathered module by module, a collective
    (rl/workers/learner.py `full_weights`): every rank must run the iteration to its end."""
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters

    from rl.workers.learner import full_weights

    if not is_peft(module):
        yield from full_weights(module, sharded)
        return
    layers = _lora_layers(module)
    for name, tensor in full_weights(module, sharded):
        if is_adapter_tensor(name):
            continue
        owner, _, leaf = name.rpartition(".base_layer.")
        layer = layers.get(owner) if leaf else None
        if layer is not None and leaf == "weight" and ADAPTER in layer.active_adapters and not layer.merged:
            adapter = [p for n, p in layer.named_parameters() if is_adapter_tensor(f".{n}")]
            with GatheredParameters(adapter, modifier_rank=None, enabled=sharded):  # nested in the base's gather
                # summed in fp32: a bf16 sum would round a small delta away against a large weight
                tensor = (tensor.float() + layer.get_delta_weight(ADAPTER).float()).to(tensor.dtype)
        yield hf_name(name), tensor


def merged_model(base_model_path: str, adapter_state: dict[str, torch.Tensor], lora, dtype=torch.float32,
                 where: str = "adapter state"):
    """A plain HF causal LM: the base at `base_model_path` with the adapters of `adapter_state` (PEFT names, what a
    LoRA checkpoint's module states hold) merged in. For exporting a LoRA run as an HF folder."""
    from transformers import AutoModelForCausalLM

    peft_model = wrap(AutoModelForCausalLM.from_pretrained(base_model_path, dtype=dtype), lora)
    load_trainable_state(peft_model, adapter_state, where)
    plain = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=dtype)
    plain.load_state_dict(dict(hf_weights(peft_model)), strict=False)  # a tied head is the embedding itself
    return plain


# ---- checkpoints -----------------------------------------------------------------------------------------------------
def frozen_names(module: torch.nn.Module) -> set[str]:
    """State-dict names of frozen parameters, tied aliases included (a tied head is the frozen embedding under a
    second name, which `named_parameters()` alone would not list)."""
    return {name for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}


def trainable_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    frozen = frozen_names(module)
    return {name: tensor for name, tensor in module.state_dict().items() if name not in frozen}


def checkpoint_adapters_only(engine) -> None:
    """Make this DeepSpeed engine's checkpoints hold its module's trainable tensors only, none of the frozen base, and
    load them back over the base the engine was built from (model.path), every trainable tensor required.

    Three of the engine's methods are wrapped on the instance: `save_checkpoint` always passes
    exclude_frozen_parameters=True (else ZeRO-2/3 also store every frozen parameter's fragment); `module_state_dict`
    drops every name of a frozen tensor (DeepSpeed's own filter keeps a frozen weight reachable under a second, tied
    name: the embedding as lm_head.weight); `load_module_state_dict` loads through `load_trainable_state` (a strict
    load would miss the frozen names), keeping DeepSpeed's parameter gathering around it."""
    save, load = engine.save_checkpoint, engine.load_module_state_dict

    def save_checkpoint(save_dir, tag=None, client_state={}, save_latest=True, exclude_frozen_parameters=True):
        return save(save_dir, tag=tag, client_state=client_state, save_latest=save_latest,
                    exclude_frozen_parameters=True)

    def load_module_state_dict(checkpoint, strict=True, custom_load_fn=None, **kwargs):
        def check_and_load(src, dst):
            load_trainable_state(dst, src, "DeepSpeed checkpoint module states")

        return load(checkpoint, strict=strict, custom_load_fn=custom_load_fn or check_and_load, **kwargs)

    engine.save_checkpoint = save_checkpoint
    engine.module_state_dict = lambda *args, **kwargs: trainable_state_dict(engine.module)
    engine.load_module_state_dict = load_module_state_dict


def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load `state` (trainable tensors only) over `module`: every trainable tensor must be in it and nothing else.
    ValueError naming `where` (the file) and the names otherwise."""
    frozen = frozen_names(module)
    result = module.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - frozen)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"{where}: module states do not fit this model (is model.lora the run's?): "
                         f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
