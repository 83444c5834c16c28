"""DeepSpeedLearner: what a policy trainer rank and a critic rank share: joining the process group, loading the model
(sharded as it loads under ZeRO-3), the engine, backward-and-step through the StepGate, checkpoints (with the RNG
states where the learner draws random numbers), and the full weights of a sharded model, gathered module by module."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from rl.workers import rng_state
from rl.workers.deepspeed_rank import RankSpec, inference_config, join_process_group, torch_dtype


class DeepSpeedLearner:
    checkpoint_subdir = ""  # the learner's folder inside a checkpoint
    keeps_rng_state = True  # a learner that draws no random numbers (the critic) saves none

    def __init__(self, spec: RankSpec):
        self.spec, self.rank, self.device = spec, spec.rank, spec.device
        join_process_group(spec)

    def ready(self) -> bool:
        return True

    @property
    def zero3(self) -> bool:
        """Parameters sharded across ranks: every forward is a collective, so every rank runs the same ones."""
        return self.spec.stage == 3

    def load_pretrained(self, auto_class):
        """`auto_class.from_pretrained(spec.model_path)` in the spec's dtype. Under ZeRO-3 each rank keeps only its
        shard as the weights load (HF builds the model inside deepspeed.zero.Init while an HfDeepSpeedConfig is set),
        so a model larger than one device never exists whole on one."""
        dtype = torch_dtype(self.spec.dtype)
        if not self.zero3:
            return auto_class.from_pretrained(self.spec.model_path, dtype=dtype)
        from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

        hf_config = HfDeepSpeedConfig(inference_config(self.spec))  # HF holds a weak reference while it is alive
        try:
            return auto_class.from_pretrained(self.spec.model_path, dtype=dtype)
        finally:
            unset_hf_deepspeed_config()  # later loads in this process (another learner's) decide for themselves
            del hf_config

    def start(self, model: torch.nn.Module, config: dict) -> None:
        """The engine for `model`'s trainable parameters: its checkpoints load without unpickling
        (rl/workers/safe_load.py), and its gate skips an optimizer step whose loss or gradient is not finite
        (rl/workers/step_gate.py)."""
        import deepspeed

        from rl.workers.safe_load import use_safe_checkpoint_loading
        from rl.workers.step_gate import StepGate

        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=config
        )
        use_safe_checkpoint_loading(self.engine)
        self.gate = StepGate(self.engine)

    def current_lr(self, configured: float) -> float:
        return float(self.scheduler.get_last_lr()[0]) if self.scheduler is not None else configured

    # ---- one micro-step ----------------------------------------------------------------------------------------------
    def backward_and_step(self, loss: torch.Tensor, zero, measure_norm: bool = False) -> dict[str, float]:
        """DeepSpeed backward + (boundary-aware) step through the StepGate: a non-finite loss on any rank is replaced
        by `zero()` on every rank (all must join the gradient reduction), and the optimizer step that ends such a
        window, or whose gradients are not finite, is skipped on every rank (rl/workers/step_gate.py). `nonfinite` is
        1.0 for a non-finite loss; at an optimizer step `skipped_update_frac` is 1.0 when it was skipped (over the
        update: the share of skipped optimizer steps) and, with `measure_norm`, when it was applied, `grad_norm` is the
        gradient norm before clipping."""
        finite = self.gate.backward(loss, zero)
        boundary = self.engine.is_gradient_accumulation_boundary()
        # Without ZeRO, DeepSpeed's fp32 path clips without keeping the norm: take it from the accumulated gradients.
        own_norm = (self._accumulated_grad_norm()
                    if measure_norm and boundary and self.engine.zero_optimization_stage() == 0 else None)
        applied = self.gate.step()
        stats = {"nonfinite": 0.0 if finite else 1.0}
        if boundary:
            stats["skipped_update_frac"] = 0.0 if applied else 1.0
            if applied and measure_norm:
                norm = self.engine.get_global_grad_norm()
                stats["grad_norm"] = float(norm if norm is not None else own_norm)
        return stats

    def _accumulated_grad_norm(self) -> float | None:
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        if not grads:  # bf16: DeepSpeed's optimizer holds the fp32 gradients and reports the norm itself
            return None
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))

    # ---- checkpoints -------------------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: str) -> None:
        """DeepSpeed state (module, optimizer, scheduler; ZeRO-3 as its shards) into `directory[/subdir]/deepspeed`,
        plus this rank's RNG states (JSON) where the learner keeps them."""
        self.engine.save_checkpoint(str(Path(directory) / self.checkpoint_subdir), tag="deepspeed", save_latest=False)
        if self.keeps_rng_state:
            rng_state.save(rng_state.rank_file(directory, self.rank))

    def load_checkpoint(self, directory: str) -> None:
        """DeepSpeed's files are read with weights_only=True (rl/workers/safe_load.py), the RNG states from JSON;
        FileNotFoundError naming the folder when there is none."""
        folder = Path(directory) / self.checkpoint_subdir
        path, _ = self.engine.load_checkpoint(str(folder), tag="deepspeed", load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            what = f"{self.checkpoint_subdir} " if self.checkpoint_subdir else ""
            raise FileNotFoundError(f"no {what}DeepSpeed checkpoint under {folder}/deepspeed")
        if self.keeps_rng_state:
            rng_state.restore_file(rng_state.rank_file(directory, self.rank))


def full_weights(module: torch.nn.Module, sharded: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """(state_dict name, full tensor) of every parameter (a tied one once, under its first name) and persistent buffer
    of `module`, in state_dict order. `sharded` (ZeRO-3): each submodule's own parameters are gathered on every rank
    while its tensors are yielded and released after, so the model is never whole on a device; a collective: every
    rank must run the iteration to its end. Use a yielded tensor (copy it) before asking for the next."""
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters

    seen: set[int] = set()
    for prefix, submodule in module.named_modules():
        own = [(name, p) for name, p in submodule.named_parameters(recurse=False) if id(p) not in seen]
        buffers = [(name, b) for name, b in submodule.named_buffers(recurse=False)
                   if b is not None and name not in submodule._non_persistent_buffers_set]
        if not own and not buffers:
            continue
        seen.update(id(p) for _, p in own)
        with GatheredParameters([p for _, p in own], modifier_rank=None, enabled=sharded and bool(own)):
            for name, tensor in own + buffers:
                yield (f"{prefix}.{name}" if prefix else name), tensor.detach()
