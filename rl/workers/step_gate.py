"""Skip a whole DeepSpeed optimizer step, on every rank, when a loss or a gradient of it is not finite.

What a skipped step is: no optimizer update (weights, Adam moments and step count unchanged), the gradients dropped,
the learning-rate schedule not advanced, `engine.skipped_steps` + 1. That is DeepSpeed's own "overflow" skip, which
its ZeRO-1/2 and bf16 optimizers already take when the gradient norm is NaN/inf; two cases it does not cover:
- fp32 without ZeRO (one rank, the CPU default): the engine hands the gradients straight to the torch optimizer;
- a micro-batch whose loss was not finite: its loss is replaced by a zero one (every rank must still join the
  gradient reduction), so the gradients left are finite, but the update they make is not the one asked for.

How: `StepGate` wraps the torch optimizer's `step`, which every DeepSpeed path calls last. At an accumulation boundary,
if a micro-batch's loss was not finite or a gradient about to be applied is not finite on any rank, it does not run
the optimizer and marks the step as an overflow, so the engine finishes through its own skip path. The gradient check
happens there because that is where every path has the final (reduced, clipped, fp32) gradients in `.grad`.
"""
from __future__ import annotations

import torch

from rl.workers.deepspeed_rank import min_over_ranks


class StepGate:
    """Backward and step of one DeepSpeed engine, with non-finite losses and gradients turned into skipped steps."""

    def __init__(self, engine):
        self.engine = engine
        self.optimizer = engine.basic_optimizer
        self._optimizer_step = self.optimizer.step
        self.optimizer.step = self._gated_step
        self._armed = False  # inside a boundary engine.step() started by this gate
        self._verdict: bool | None = None  # this boundary's decision, agreed on every rank
        self._window_nonfinite = False  # a micro-batch of the current accumulation window had a non-finite loss

    def backward(self, loss: torch.Tensor, zero) -> bool:
        """Backward of `loss`, or of `zero()` when `loss` is not finite on some rank (then on every rank, so all
        ranks run the same graph's reduction). Returns whether the loss was finite on every rank."""
        finite = min_over_ranks(float(torch.isfinite(loss).all().item()), self.engine.device) == 1.0
        if not finite:
            loss = zero()
            self._window_nonfinite = True
        self.engine.backward(loss)
        return finite

    def step(self) -> bool | None:
        """engine.step(). At an accumulation boundary: whether the update was applied; elsewhere None."""
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()
            return None
        skipped_before = self.engine.skipped_steps
        self._armed, self._verdict = True, None
        try:
            self.engine.step()
        finally:
            self._armed, self._verdict, self._window_nonfinite = False, None, False
        return self.engine.skipped_steps == skipped_before

    def _gated_step(self, *args, **kwargs):
        if not self._armed:  # a call DeepSpeed makes on its own (e.g. building optimizer states): not ours to judge
            return self._optimizer_step(*args, **kwargs)
        if self._verdict is None:  # the first call of this boundary decides for every param group
            ok = not self._window_nonfinite and grads_finite(self.optimizer)
            self._verdict = min_over_ranks(float(ok), self.engine.device) == 1.0
        # The engine reads `overflow` after the step: True sends it down its skip path (no scheduler step).
        self.engine.optimizer.overflow = not self._verdict
        if self._verdict:
            return self._optimizer_step(*args, **kwargs)
        return None


def grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one host sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all().item())
