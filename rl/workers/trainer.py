"""PolicyTrainer: one DeepSpeed rank holding the policy (and, when a KL penalty is on, a frozen reference copy; with
LoRA adapters, rl/workers/lora.py, the reference is the policy with its adapters off).

A thin wrapper: a DeepSpeed engine (trainer.zero_stage; by default ZeRO-2 with several ranks, no ZeRO on one; gloo +
fp32 on CPU, nccl + bf16 on GPU; rl/workers/learner.py) and the pure loss functions of rl/algo/losses.py,
rl/algo/kl.py, rl/algo/importance.py. Run as a Ray actor, one per rank (`make_trainer_actor`).

What `update` implements: clipped policy loss on sequence (GRPO family) or per-token (PPO/GAE) advantages, optional
KL to the reference in the loss (k1/k2/k3), truncated importance weights for the vLLM-vs-trainer log-prob mismatch
(Yao et al. 2025). `kl_to_reference` serves the KL-in-reward placement; the critic is its own actor
(rl/workers/critic.py). With `prefix_sharing` the system prompt common to a minibatch runs once per optimizer step
(rl/workers/prefix_sharing.py `SharedPrefix`), however many micro-batches the minibatch has. An optimizer step whose
loss or gradient is NaN/inf on any rank is skipped on every rank (rl/workers/step_gate.py); checkpoints load without
unpickling (rl/workers/safe_load.py). Under ZeRO-3 the reference is sharded the same way (an inference-only engine)
and every forward is a collective: all ranks run the same number of them (equal shards, agreed prefix lengths).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from rl.algo.batch import TrainBatch
from rl.algo.importance import truncated_is_weights
from rl.algo.kl import kl_estimate
from rl.algo.logprobs import token_logprobs
from rl.algo.losses import aggregate_token_loss, clipped_policy_loss, entropy_from_logits, masked_mean
from rl.workers import lora as lora_adapters
from rl.workers.deepspeed_rank import (
    RankSpec, StatMeans, aggregation_total, deepspeed_config, finite_values, inference_config, micro_batches,
    min_over_ranks, minibatch_rows, weight_fraction,
)
from rl.workers.learner import DeepSpeedLearner
from rl.workers.prefix_sharing import SharedPrefix, shared_prefix_length
from rl.workers.weight_broadcast import SendingTrainer


class PolicyTrainer(DeepSpeedLearner, SendingTrainer):
    def __init__(self, spec: RankSpec, algo, temperature: float, prefix_sharing: bool, lora=None):
        """`lora`: the model.lora section; rank > 0 trains LoRA adapters only (rl/workers/lora.py)."""
        from transformers import AutoModelForCausalLM

        super().__init__(spec)
        self.algo, self.norm_length, self.temperature, self.prefix_sharing = (algo, spec.norm_length, temperature,
                                                                              prefix_sharing)
        model = self.load_pretrained(AutoModelForCausalLM)
        if spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model = lora_adapters.wrap(model, lora)
        self.tied_embeddings = bool(getattr(model.config, "tie_word_embeddings", False))
        # With prefix sharing each optimizer step has one more backward: the shared prefix's, after the micro-batches.
        self.start(model, deepspeed_config(algo, spec, extra_micro_steps=int(prefix_sharing)))
        self.reference = None  # with LoRA: the policy itself with its adapters off
        if lora_adapters.enabled(lora):
            lora_adapters.checkpoint_adapters_only(self.engine)
        elif algo.uses_reference:
            self.reference = self._start_reference(AutoModelForCausalLM)

    def _start_reference(self, auto_class) -> torch.nn.Module:
        """The frozen reference: a full copy on each rank, or under ZeRO-3 sharded like the policy in an
        inference-only engine (no optimizer), whose hooks gather each layer's parameters for its forward."""
        reference = self.load_pretrained(auto_class)
        reference.eval().requires_grad_(False)
        if not self.zero3:
            return reference.to(self.engine.device)
        import deepspeed

        self.reference_engine, *_ = deepspeed.initialize(model=reference, config=inference_config(self.spec))
        self.reference_engine.eval()
        return self.reference_engine.module

    # ---- forward helpers -------------------------------------------------------------------------------------------
    # Log-probs live in token coordinates: lp[b, t] = log p(token t | tokens < t), 0 where t is not trained. Logits are
    # computed only from the first trained token on (`logits_to_keep`): the long shared system prompt needs none, which
    # saves the vocabulary projection (and its memory) over every prompt position.
    def _token_logprobs(self, model, batch: TrainBatch, start: int, prefix: SharedPrefix | None = None):
        """(log-probs of tokens start..L-1 [B, L-start], logits predicting them [B, L-start, V])."""
        input_ids = batch.input_ids.to(self.engine.device)
        if prefix is not None:  # the system prompt shared by every row: computed once for many micro-batches
            return prefix.logprobs(model, input_ids, batch.attention_mask.to(self.engine.device), start,
                                   self.temperature)
        keep = input_ids.shape[1] - start + 1
        # No attention mask: rows are right-padded, so under causal attention no real token ever sees a pad, and
        # without a mask SDPA runs its fused causal kernel instead of materialising [B, heads, L, L] scores.
        logits = model(input_ids=input_ids, logits_to_keep=keep).logits[:, :-1]
        return token_logprobs(logits, input_ids[:, start:], temperature=self.temperature), logits

    @torch.no_grad()
    def _no_grad_logprobs(self, model, batch: TrainBatch, micro_batch_size: int) -> torch.Tensor:
        """Token-coordinate log-probs of the whole batch (old policy or reference), computed in micro-batches."""
        out = torch.zeros(batch.loss_mask.shape, dtype=torch.float32)
        prefix = self._shared_prefix(model, batch)
        for begin in range(0, len(batch), micro_batch_size):
            micro = batch.select(slice(begin, begin + micro_batch_size)).trimmed()
            start = micro.first_trained_position()
            logprobs, _ = self._token_logprobs(model, micro, start, prefix)
            out[begin : begin + len(micro), start : micro.input_ids.shape[1]] = logprobs.float().cpu()
        return out

    def _shared_prefix(self, model, batch: TrainBatch) -> SharedPrefix | None:
        """The prompt prefix common to `batch`'s rows, run once (None when prefix sharing is off). Every rank uses
        the shortest length found on any rank, so all ranks backpropagate through the same graph (ZeRO-2 reduces
        gradients in hook order); under ZeRO-3 also without grad, as every forward gathers parameters collectively."""
        if not self.prefix_sharing:
            return None
        batch = batch.trimmed()
        ids, mask = batch.input_ids.to(self.engine.device), batch.attention_mask.to(self.engine.device)
        start = batch.first_trained_position()
        length = shared_prefix_length(ids, mask, start)
        if torch.is_grad_enabled() or self.zero3:
            length = int(min_over_ranks(length, self.engine.device))
        return SharedPrefix(model, ids, mask, start, max_length=length)

    # ---- the update --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def kl_to_reference(self, batch: TrainBatch, micro_batch_size: int) -> torch.Tensor:
        """Per-token KL(pi || ref) estimates of the sampled tokens, [B, L] in token coordinates (0 where untrained),
        for algo.kl_in=reward: summed into a sequence penalty (GRPO) or added per token (PPO, Ziegler et al. 2019)."""
        policy = self._no_grad_logprobs(self.engine.module, batch, micro_batch_size)
        reference = self.reference_logprobs(batch, micro_batch_size)
        return kl_estimate(policy, reference, self.algo.kl_estimator) * batch.loss_mask

    @torch.no_grad()
    def reference_logprobs(self, batch: TrainBatch, micro_batch_size: int) -> torch.Tensor:
        """Token-coordinate log-probs of the frozen reference policy (the KL's other side): its own model, or with
        LoRA the policy with its adapters off (the base never trains)."""
        if self.reference is not None:
            return self._no_grad_logprobs(self.reference, batch, micro_batch_size)
        with lora_adapters.adapters_off(self.engine.module):
            return self._no_grad_logprobs(self.engine.module, batch, micro_batch_size)

    def update(self, batch: TrainBatch, micro_batch_size: int, kl_coef: float = 0.0) -> dict[str, float]:
        """One RL update on this rank's shard: ppo_epochs x minibatches optimizer steps, each over the minibatch's
        micro-batches (and, with prefix sharing, its shared prefix's backward as the last micro-step). Returns the mean
        of each stat over the micro-steps.

        `kl_coef` weighs the KL-to-reference term of the loss (0 when the KL is in the reward instead); the driver
        owns the coefficient because an adaptive controller changes it between steps.
        """
        algo = self.algo
        start = time.time()
        self.engine.train()
        n_steps = algo.ppo_epochs * algo.minibatches
        # With a single optimizer step the policy that sampled is the current one: old log-probs = detached current
        # ones.
        old_logprobs = self._no_grad_logprobs(self.engine.module, batch, micro_batch_size) if n_steps > 1 else None
        ref_logprobs = self.reference_logprobs(batch, micro_batch_size) if kl_coef > 0 else None
        logprob_seconds = time.time() - start
        phase_seconds = {"prefix_forward": 0.0, "prefix_backward_and_step": 0.0}
        stats = StatMeans()
        for _epoch in range(algo.ppo_epochs):
            for rows in minibatch_rows(len(batch), algo.minibatches):
                total = aggregation_total(batch.loss_mask[rows], algo.loss_aggregation)
                prefix = None
                if self.prefix_sharing:  # the minibatch's shared prefix, run once (with grad) before its micro-batches
                    began = time.time()
                    prefix = self._shared_prefix(self.engine, batch.select(rows))
                    phase_seconds["prefix_forward"] += time.time() - began
                for micro_rows in micro_batches(rows, micro_batch_size):
                    stats.add(self._micro_step(batch, micro_rows, total, old_logprobs, ref_logprobs, kl_coef, prefix))
                if self.prefix_sharing:
                    began = time.time()
                    stats.add(self._prefix_step(prefix))
                    phase_seconds["prefix_backward_and_step"] += time.time() - began
        result = stats.means()
        result["lr"] = self.current_lr(algo.lr)
        result["time/trainer_logprob_s"] = logprob_seconds
        result["time/trainer_update_s"] = time.time() - start - logprob_seconds
        if self.prefix_sharing:  # the rest of the update is the micro-batches' suffix forwards and backwards
            result.update({f"time/trainer_{name}_s": seconds for name, seconds in phase_seconds.items()})
        return result

    def _micro_step(self, batch, index, total, old_logprobs, ref_logprobs, kl_coef, prefix) -> dict[str, float]:
        algo = self.algo
        micro = batch.select(index).trimmed()
        start, end = micro.first_trained_position(), micro.input_ids.shape[1]
        mask = micro.loss_mask[:, start:].to(self.engine.device)
        logprobs, logits = self._token_logprobs(self.engine, micro, start, prefix)
        old = logprobs.detach() if old_logprobs is None else old_logprobs[index, start:end].to(logprobs.device)
        sampler = micro.sampler_logprobs[:, start:].to(logprobs.device)
        is_weights, is_stats = (None, {})
        if algo.tis_cap is not None:
            is_weights, is_stats = truncated_is_weights(old, sampler, mask, algo.tis_cap)
        advantages = micro.advantages if micro.advantages.dim() == 1 else micro.advantages[:, start:]
        policy_loss, loss_stats = clipped_policy_loss(
            logprobs, old, advantages.to(logprobs.device), mask, algo.clip_low, algo.clip_high,
            algo.loss_aggregation, is_weights=is_weights, norm_length=self.norm_length,
        )
        loss = policy_loss
        stats = {"loss": policy_loss.item(), **loss_stats, **is_stats}
        if ref_logprobs is not None:
            kl = kl_estimate(logprobs, ref_logprobs[index, start:end].to(logprobs.device), algo.kl_estimator)
            kl_loss = aggregate_token_loss(kl, mask, algo.loss_aggregation, self.norm_length)
            loss = loss + kl_coef * kl_loss
            stats["kl"] = kl_loss.item()
            stats["kl_response_sum"] = (kl.detach() * mask).sum(dim=1).mean().item()
        if algo.entropy_coef > 0:
            entropy = masked_mean(entropy_from_logits(logits), mask)
            loss = loss - algo.entropy_coef * entropy
            stats["entropy"] = entropy.item()
        else:
            with torch.no_grad():
                stats["entropy"] = masked_mean(entropy_from_logits(logits.detach()), mask).item()
        if is_weights is None:  # with TIS on, tis_abs_logprob_diff_mean already reports the mismatch
            stats["tis_abs_logprob_diff_mean"] = masked_mean((logprobs.detach() - sampler).abs(), mask).item()
        # DeepSpeed divides by gradient_accumulation_steps; scale so the micro losses sum to the minibatch loss.
        fraction = weight_fraction(micro.loss_mask, total, algo.loss_aggregation)
        scaled = loss * fraction * self.engine.gradient_accumulation_steps()
        step_stats = self.backward_and_step(scaled, zero=lambda: logits.float().sum() * 0.0, measure_norm=True)
        # A micro-batch whose loss is not finite here reports only the flags, so no NaN reaches the update's means.
        kept = finite_values(stats) if math.isfinite(stats["loss"]) and torch.isfinite(loss).item() else {}
        return {**kept, **step_stats}

    def _prefix_step(self, prefix: SharedPrefix | None) -> dict[str, float]:
        """After the minibatch's micro-batches: the shared prefix's backward (the gradient its KV collected from every
        micro-batch) as one more DeepSpeed micro-step, which ends the gradient accumulation and steps the optimizer."""
        surrogate = prefix.surrogate_loss() if prefix is not None else None
        if surrogate is None:  # nothing shared (on every rank: the length is agreed): keep DeepSpeed's count
            surrogate = self._zero_loss()
        elif self.spec.offload_optimizer:
            # Offloaded, DeepSpeed hands a parameter's accumulated gradient to the optimizer only if the window's last
            # backward reaches it; the prefix's misses every layer above its keys/values.
            surrogate = surrogate + self._zero_loss()
        # The leaves' gradients already carry the micro-batch weights; undo DeepSpeed's division by the steps.
        return self.backward_and_step(surrogate * self.engine.gradient_accumulation_steps(), zero=self._zero_loss,
                                      measure_norm=True)

    def _zero_loss(self) -> torch.Tensor:
        """A zero loss that reaches every parameter, for a micro-step with nothing to learn from."""
        if not self.zero3:
            return sum(p.sum() for p in self.engine.module.parameters()) * 0.0
        # ZeRO-3 keeps only shards between forwards: a one-token forward gathers (and backpropagates into) them all.
        token = torch.zeros(1, 1, dtype=torch.long, device=self.engine.device)
        return self.engine(input_ids=token).logits.float().sum() * 0.0

    # ---- weights and checkpoints ------------------------------------------------------------------------------------
    def named_weights(self):
        """The full HF-named weights the engines load, one tensor at a time (on the trainer's device). Under ZeRO-3
        every rank must run the iteration to its end (each module's gather is collective); the tensors are copies
        there, as a gathered tensor is released after its module. With LoRA: the base weights with the adapters
        merged in."""
        for name, tensor in lora_adapters.hf_weights(self.engine.module, sharded=self.zero3):
            if self.tied_embeddings and name == "lm_head.weight":
                continue  # vLLM ties the head to the embedding itself
            yield name, tensor.clone() if self.zero3 else tensor

    def get_weights(self) -> list[tuple[str, np.ndarray]]:
        """Full HF-named weights as numpy arrays on rank 0 (bf16 travels as its int16 bit pattern; numpy has no bf16);
        other ranks return []. Under ZeRO-3 every rank must call it: the weights are gathered module by module."""
        if self.rank != 0 and not self.zero3:
            return []
        weights = []
        for name, tensor in self.named_weights():
            if self.rank != 0:
                continue
            tensor = tensor.cpu().contiguous()
            array = tensor.view(torch.int16).numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            weights.append((name, array))
        return weights


def make_trainer_actor(num_cpus: float = 1, num_gpus: float = 0):
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(PolicyTrainer)
