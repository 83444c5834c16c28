"""HF model folders (what vLLM, transformers, launch/eval.py and the hub load): one writer, `write_hf_folder`, for all.

Three callers hand it full HF-named weights:
- a run with `ckpt.save_hf=true`: `<checkpoint>/hf_model/` inside every checkpoint (the checkpoint's own temp folder
  and manifest make it atomic and verifiable), from the policy's rank 0 (`Cluster.policy_weights`: gathered under
  ZeRO-3, LoRA merged into the base);
- the end of a run with `ckpt.save_hf` or `ckpt.push_to_hub`: `<run_dir>/hf_model/` (the folder pushed to the hub);
- `launch/eval.py model.path=<checkpoint>` of a checkpoint without `hf_model/`: `export_hf` reads its DeepSpeed module
  states (ZeRO 0-2; a LoRA run's adapters merged into its base) into `<checkpoint>/hf_export/`.
A checkpoint may come from someone else: its files are checked against its manifest and read without unpickling
(rl/workers/safe_load.py).

The weights are written straight to safetensors shards (no model is built: a 70B model would not fit the driver's
memory twice), with the base model's config, generation config and tokenizer beside them. Every folder is written into
`<out>.tmp-<pid>` and renamed into place, so a reader never sees half a folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from rl.run.checkpoint import verify_checkpoint
from rl.workers.safe_load import safe_torch_load

HF_FOLDER = "hf_model"  # inside a checkpoint and the run folder (written by the run)
EVAL_EXPORT_FOLDER = "hf_export"  # inside a checkpoint, written by launch/eval.py when the run wrote no HF_FOLDER
MAX_SHARD_BYTES = 5 * 1024**3  # transformers' default shard size
SAFETENSORS_INDEX = "model.safetensors.index.json"


def as_tensor(value) -> torch.Tensor:
    """numpy or torch -> a contiguous CPU tensor; int16 arrays are bf16 bit patterns (PolicyTrainer.get_weights: numpy
    has no bf16, and no HF model has int16 parameters)."""
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.view(torch.bfloat16) if value.dtype == np.int16 else tensor
    return value.detach().cpu().contiguous()


def _shards(tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name], size = tensor, size + nbytes
    return shards + [current] if current else shards


def _write_weights(folder: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> None:
    """`model.safetensors`, or numbered shards plus the index transformers reads, as save_pretrained writes them."""
    from safetensors.torch import save_file

    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_hf_folder(out_dir: Path, weights: Iterable[tuple[str, object]], base_model_path: str,
                    max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """An HF folder at `out_dir` from full HF-named `weights` ((name, numpy array or tensor) pairs) and the base
    model's config, generation config and tokenizer. Written into a temp folder and renamed into place; a failure
    leaves neither a partial folder nor the temp one."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    out_dir = Path(out_dir)
    config = AutoConfig.from_pretrained(base_model_path)
    tensors = {name: as_tensor(value) for name, value in weights}
    if getattr(config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # the embedding's twin: transformers ties it on load (safetensors refuses
        # to save one storage twice)
    if not tensors:
        raise ValueError(f"{out_dir}: no weights to write")
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_weights(tmp, tensors, max_shard_bytes)
        if len(dtypes) == 1:  # what the weights are, not what the base was saved as
            config.dtype = next(iter(dtypes))
        config.save_pretrained(tmp)
        try:
            GenerationConfig.from_pretrained(base_model_path).save_pretrained(tmp)
        except OSError:
            pass  # the base has no generation_config.json: transformers derives one from the config
        AutoTokenizer.from_pretrained(base_model_path).save_pretrained(tmp)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """A finished temp folder to `out_dir`; a folder already there is moved aside first, not deleted, so that no
    instant lacks both."""
    displaced = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        shutil.rmtree(displaced, ignore_errors=True)
        os.replace(out_dir, displaced)
    os.replace(tmp, out_dir)
    shutil.rmtree(displaced, ignore_errors=True)


def copy_hf_folder(source: Path, out_dir: Path) -> Path:
    """`source` (an HF folder a checkpoint holds) to `out_dir`, atomically; hard links where the filesystem allows
    (the files are never written again), copies elsewhere."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    try:
        shutil.copytree(source, tmp, copy_function=link_or_copy)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_hf(checkpoint: Path, out_dir: Path, base_model_path: str, lora=None) -> Path:
    """A checkpoint's trained weights (DeepSpeed rank-0 module states) as an HF folder at `out_dir`. `lora`: the run's
    model.lora section; a LoRA checkpoint holds adapters only, which are merged into the base at `base_model_path`."""
    states_file = Path(checkpoint) / "deepspeed" / "mp_rank_00_model_states.pt"
    if not states_file.exists():
        raise FileNotFoundError(f"{checkpoint}: no DeepSpeed module states at {states_file}")
    verify_checkpoint(checkpoint, hashes=True)  # a damaged or edited file stops here, named
    # weights_only: the file is tensors and plain data (DeepSpeed's module states hold no other objects); a file with
    # anything else is refused, naming it, before any of it runs.
    states = safe_torch_load(states_file, map_location="cpu")
    state = states.get("module") if isinstance(states, dict) else None
    # ZeRO-3 stores an empty placeholder for each sharded parameter
    if not isinstance(state, dict) or not state or any(t.numel() == 0 for t in state.values()):
        raise ValueError(f"{states_file}: no full 'module' state dict (a ZeRO-3 checkpoint holds shards only: run "
                         "with ckpt.save_hf=true to have an HF folder in every checkpoint)")
    from rl.workers import lora as lora_adapters

    if any(lora_adapters.is_adapter_tensor(name) for name in state):
        if not lora_adapters.enabled(lora):
            raise ValueError(f"{states_file}: LoRA adapters, but the checkpoint's config has no model.lora.rank > 0")
        merged = lora_adapters.merged_model(base_model_path, state, lora, where=str(states_file))
        return write_hf_folder(out_dir, merged.state_dict().items(), base_model_path)
    _check_names(states_file, state, base_model_path)
    return write_hf_folder(out_dir, ((name, t.float()) for name, t in state.items()), base_model_path)


def _check_names(source: Path, state: dict, base_model_path: str) -> None:
    """The state's names are the base model's (lm_head.weight may be absent: tied to the embedding)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # names only, no memory
        expected = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model_path)).state_dict()
    missing = [name for name in expected if name not in state and name != "lm_head.weight"]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit {base_model_path} (missing {missing}, unexpected {unexpected}); "
                         "a LoRA checkpoint holds adapters only: its run's ckpt.save_hf=true folders hold merged weights")


def checkpoint_hf_folder(checkpoint: Path) -> Path | None:
    """The HF folder a run wrote into `checkpoint` (ckpt.save_hf=true), or None."""
    folder = Path(checkpoint) / HF_FOLDER
    return folder if (folder / "config.json").is_file() else None


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / "COMPLETE").exists() and (Path(path) / "deepspeed").is_dir()
