"""CriticTrainer: a DeepSpeed rank holding PPO's value model (the alignment-faking paper trained with PPO); the critic
runs on trainer.critic_world_size ranks, sharded like the policy.

The value model is the policy's transformer (`AutoModel`, initialised from the same checkpoint, as in Ziegler et al.
2019 / OpenRLHF) with a scalar linear head on every position. Chosen over
`AutoModelForTokenClassification(num_labels=1)`: that loads a causal-LM checkpoint cleanly for Llama, but adds a dropout
(p=0.1 by default) that makes the value noisy in training mode, and not every causal-LM architecture has a
token-classification class; `AutoModel` + `nn.Linear` works for any of them. The head starts at zero, so the first
values are 0 (the usual scale of an outcome reward's baseline) and the head is learned before the backbone moves.

Token coordinates, as the policy's log-probs: values[b, t] = V(state before token t) = head(hidden[b, t - 1]), kept
only where loss_mask[b, t] is set (0 elsewhere), so `rl.algo.advantages.gae(rewards, values, loss_mask, ...)` takes it
as is.

What `update` implements: the clipped value loss of `rl.algo.losses.clipped_value_loss` (OpenAI baselines ppo2 /
lm-human-prefs), aggregated like the policy loss (`algo.loss_aggregation`), `algo.ppo_epochs x algo.minibatches`
optimizer steps. No value-loss weight (vf_coef): that weighs a value loss sharing parameters with the policy; this
critic has its own parameters and optimizer, where a constant factor only rescales the gradient. Left out: a separate
critic model. With several critic ranks the driver gives each an equal share of the batch (rl/workers/cluster.py).

With `model.lora.rank > 0` the backbone gets LoRA adapters with the policy's settings (rl/workers/lora.py) and the
value head stays fully trainable; checkpoints then hold the adapters and the head only.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from rl.algo.batch import TrainBatch
from rl.algo.losses import clipped_value_loss
from rl.workers import lora as lora_adapters
from rl.workers.deepspeed_rank import (
    RankSpec, StatMeans, aggregation_total, deepspeed_config, finite_values, micro_batches, minibatch_rows, torch_dtype,
    weight_fraction,
)
from rl.workers.learner import DeepSpeedLearner

CRITIC_SUBDIR = "critic"


class ValueModel(nn.Module):
    """A transformer backbone and a scalar head: hidden states [B, L, H] -> values [B, L]."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


class CriticTrainer(DeepSpeedLearner):
    checkpoint_subdir = CRITIC_SUBDIR
    keeps_rng_state = False  # the critic draws no random numbers (no dropout, no sampling)

    def __init__(self, spec: RankSpec, algo, lr: float | None, lora=None):
        """`lr` overrides `algo.lr` (critics usually learn faster than the policy); `lora` is the model.lora
        section (rank > 0: adapters on the backbone)."""
        from transformers import AutoModel

        super().__init__(spec)
        self.algo, self.norm_length, self.micro_batch_size = algo, spec.norm_length, spec.micro_batch_size
        model_dtype = torch_dtype(spec.dtype)
        backbone = self.load_pretrained(AutoModel)
        if spec.gradient_checkpointing:
            backbone.gradient_checkpointing_enable()
        backbone = lora_adapters.wrap(backbone, lora, task_type=None)
        model = ValueModel(backbone, backbone.config.hidden_size)
        if self.zero3:  # the backbone holds shards in its dtype already; only the new head needs converting
            model.value_head.to(model_dtype)
        else:
            model = model.to(model_dtype)
        self.lr = algo.lr if lr is None else lr
        self.start(model, deepspeed_config(algo, spec, lr=self.lr))
        if lora_adapters.enabled(lora):
            lora_adapters.checkpoint_adapters_only(self.engine)

    # ---- values ------------------------------------------------------------------------------------------------------
    def _values(self, model, batch: TrainBatch, start: int) -> torch.Tensor:
        """Values of tokens start..L-1 [B, L-start]: the head on the hidden states of positions start-1..L-2."""
        per_position = model(
            input_ids=batch.input_ids.to(self.engine.device), attention_mask=batch.attention_mask.to(self.engine.device)
        )
        return per_position[:, start - 1 : -1].float()

    @torch.no_grad()
    def values(self, batch: TrainBatch) -> torch.Tensor:
        """V(state before token t) for every trained token, [B, L] on the CPU, 0 where loss_mask is 0."""
        self.engine.eval()
        out = torch.zeros(batch.loss_mask.shape, dtype=torch.float32)
        for begin in range(0, len(batch), self.micro_batch_size):
            micro = batch.select(slice(begin, begin + self.micro_batch_size)).trimmed()
            start, end = micro.first_trained_position(), micro.input_ids.shape[1]
            out[begin : begin + len(micro), start:end] = self._values(self.engine.module, micro, start).cpu()
        return torch.where(batch.loss_mask.bool(), out, torch.zeros_like(out))

    # ---- the update --------------------------------------------------------------------------------------------------
    def update(
        self, batch: TrainBatch, returns: torch.Tensor, old_values: torch.Tensor, micro_batch_size: int
    ) -> dict[str, float]:
        """Fit the values to `returns` (from GAE) with the loss clipped around `old_values` (what GAE used).

        Returns the mean stats: vf_loss, vf_clip_frac, value_mean, return_mean, and timings/lr prefixed critic_."""
        shape = tuple(batch.loss_mask.shape)
        if tuple(returns.shape) != shape or tuple(old_values.shape) != shape:
            raise ValueError(
                f"critic update: returns {tuple(returns.shape)} and old_values {tuple(old_values.shape)} must be "
                f"[B, L] = {shape} like the batch's loss_mask"
            )
        algo = self.algo
        start_time = time.time()
        self.engine.train()
        stats = StatMeans()
        for _epoch in range(algo.ppo_epochs):
            for rows in minibatch_rows(len(batch), algo.minibatches):
                total = aggregation_total(batch.loss_mask[rows], algo.loss_aggregation)
                for micro_rows in micro_batches(rows, micro_batch_size):
                    stats.add(self._micro_step(batch, micro_rows, total, returns, old_values))
        result = stats.means()
        result["critic_lr"] = self.current_lr(self.lr)
        result["time/critic_update_s"] = time.time() - start_time
        return result

    def _micro_step(self, batch, index, total, returns, old_values) -> dict[str, float]:
        algo = self.algo
        micro = batch.select(index).trimmed()
        start, end = micro.first_trained_position(), micro.input_ids.shape[1]
        values = self._values(self.engine, micro, start)
        device = values.device
        loss, stats = clipped_value_loss(
            values, old_values[index, start:end].to(device), returns[index, start:end].to(device),
            micro.loss_mask[:, start:].to(device), algo.value_clip, algo.loss_aggregation, self.norm_length,
        )
        fraction = weight_fraction(micro.loss_mask, total, algo.loss_aggregation)
        scaled = loss * fraction * self.engine.gradient_accumulation_steps()
        # Like the policy's: a non-finite value loss or gradient skips the critic's optimizer step
        # (rl/workers/step_gate.py); the driver counts it with the policy's and stops after fault.max_nonfinite_steps.
        step = self.backward_and_step(scaled, zero=lambda: values.sum() * 0.0)
        out = finite_values({"vf_loss": loss.item(), **stats}) if step["nonfinite"] == 0.0 else {}
        return {**out, **{f"critic_{key}": value for key, value in step.items()}}

def make_critic_actor(num_cpus: float = 1, num_gpus: float = 0):
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(CriticTrainer)
