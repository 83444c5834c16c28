"""TRL 1.16's GRPOTrainer on the same workload, run in this process (colocated HF generate, as TRL does on CPU).

Same model, prompts (afrl's rendered token text, "<" prefill included, so both sides see identical prompt tokens),
prompts x samples, max new tokens, temperature, optimizer (AdamW, constant lr, grad-norm clip 1.0), loss aggregation
(TRL `loss_type="grpo"` = afrl's seq_mean_token_mean), clip 0.2, group-std advantages, KL coefficient, and reward
(rewards.rule.RuleReward on rollouts.parsing.parse_transcript of "<" + completion).
Micro-batches are the same size on both sides unless `trl_micro_batch_size` says otherwise (TRL accumulates gradients
over the step's micro-batches, so the optimizer step is the same; it still generates the whole step's samples at
once). Left as each framework does it: afrl
applies truncated importance weights (vLLM vs trainer log-probs), TRL without vLLM has none to apply.

Steps are timed by a TrainerCallback from on_step_begin to on_step_end (TRL generates inside training_step, so
generation is included); `between_steps(step)` runs after each TRL step, outside its timing: that is how the bench
alternates TRL and afrl steps in one process tree.
"""
from __future__ import annotations

import time
from typing import Callable

from rl.bench.floor import prompt_shape


def rule_reward_fn(prefill: str, rule_cfg, tokenizer, seen_prompts: list):
    """A TRL reward function scoring like afrl's loop: RuleReward on the parsed "<"-prefilled transcript."""
    from rewards.rule import RuleReward
    from rollouts.parsing import parse_transcript
    from rollouts.types import RewardInput

    reward = RuleReward(rule_cfg)
    eos = set(tokenizer.all_special_ids)

    def rule_reward(prompts, completions, completion_ids=None, request=None, **_):
        seen_prompts.append(list(prompts))
        inputs = []
        for i, completion in enumerate(completions):
            truncated = bool(completion_ids) and (not completion_ids[i] or completion_ids[i][-1] not in eos)
            parsed = parse_transcript(prefill + completion, truncated=truncated)
            inputs.append(RewardInput.from_parsed(request[i], parsed))
        return reward.score(inputs).scores

    return rule_reward


class TrlSide:
    def __init__(self, model_path: str, prompt_texts: list[str], request_texts: list[str], prefill: str, rule_cfg,
                 workload, lr: float, kl_coef: float, temperature: float, seed: int, device: str, dtype: str,
                 output_dir: str, micro_batch_size: int):
        from datasets import Dataset
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.workload = workload
        self.seen_prompts: list[list[str]] = []
        self.dataset = Dataset.from_dict({"prompt": prompt_texts, "request": request_texts})
        self.reward_fn = rule_reward_fn(prefill, rule_cfg, self.tokenizer, self.seen_prompts)
        self.args = dict(
            model_path=model_path, lr=lr, kl_coef=kl_coef, temperature=temperature, seed=seed, device=device,
            dtype=dtype, output_dir=output_dir, micro_batch_size=micro_batch_size,
        )

    def _config(self, total_steps: int):
        import torch
        from trl import GRPOConfig

        a, w = self.args, self.workload
        samples = w.prompts_per_step * w.samples_per_prompt
        micro = min(a["micro_batch_size"], samples)
        if samples % micro:
            raise ValueError(f"trainer.micro_batch_size={micro} must divide the {samples} samples per step")
        return GRPOConfig(
            output_dir=a["output_dir"], per_device_train_batch_size=micro, gradient_accumulation_steps=samples // micro,
            num_generations=w.samples_per_prompt, max_completion_length=w.max_new_tokens,
            temperature=a["temperature"], top_p=1.0, learning_rate=a["lr"], lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=a["kl_coef"], loss_type="grpo",
            scale_rewards="group", epsilon=0.2, max_steps=total_steps, logging_steps=1, save_strategy="no",
            report_to="none", disable_tqdm=True, seed=a["seed"], use_cpu=a["device"] == "cpu",
            bf16=a["dtype"] == "bfloat16", model_init_kwargs={"dtype": getattr(torch, a["dtype"])},
            dataloader_num_workers=0,
        )

    def run(self, total_steps: int, between_steps: Callable[[int], None]) -> list[dict]:
        """Train `total_steps` TRL steps; returns one record per step (warm-up included, the caller drops it)."""
        from transformers import TrainerCallback
        from trl import GRPOTrainer

        records: list[dict] = []
        side = self
        n = self.workload.prompts_per_step * self.workload.samples_per_prompt

        class StepClock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                self.start = time.time()

            def on_step_end(self, args, state, control, **kwargs):
                prompts = side.seen_prompts[-1] if side.seen_prompts else []
                ids = [side.tokenizer(p, add_special_tokens=False)["input_ids"] for p in dict.fromkeys(prompts)]
                records.append({"step_s": time.time() - self.start, "samples": n, "generated_tokens": 0,
                                **prompt_shape(ids)})
                between_steps(state.global_step)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "completions/mean_length" in logs and records:
                    records[-1]["generated_tokens"] = logs["completions/mean_length"] * n
                    records[-1]["reward_mean"] = logs.get("reward")

        trainer = GRPOTrainer(
            model=self.args["model_path"], reward_funcs=self.reward_fn, args=self._config(total_steps),
            train_dataset=self.dataset, processing_class=self.tokenizer, callbacks=[StepClock()],
        )
        trainer.train()
        return records
