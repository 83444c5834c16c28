"""The `hardware=gpu` path of the bench: afrl's roles sharing one CUDA GPU, with HF generate when vLLM-CUDA is absent.

Never needed for CI and not runnable on the CPU machine; kept small and explicit.
- The roles share the card through `resources.placement=colocated` (set by the bench's GPU overrides): one bundle
  holds engine and trainer; vLLM keeps to rollout.gpu_memory_utilization of the memory and sleeps during the update.
- `use_hf_engines`: the cluster starts `HFRolloutEngine` actors instead of vLLM ones.
- `HFRolloutEngine`: the RolloutEngine interface (ready / generate / sleep / wake_up / load_weights) on
  `model.generate`, single-turn
  (the bench runs max_turns=1), sampler log-probs from the processed scores (temperature and top-p applied, as vLLM).
"""
from __future__ import annotations

import os
import time
import warnings


def use_hf_engines() -> None:
    """Rollout engines on HF generate (the CUDA vLLM wheel is absent): the cluster starts `HFRolloutEngine` actors."""
    import ray

    import rl.workers.cluster

    rl.workers.cluster.make_engine_actor = lambda num_cpus=1: ray.remote(num_cpus=num_cpus)(HFRolloutEngine)


class HFRolloutEngine:
    def __init__(self, model_path: str, engine_kwargs: dict | None = None, env: dict | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.time()
        kwargs = engine_kwargs or {}
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, kwargs.get("dtype", "float32"))
        self.model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(model_path), dtype=dtype).to(self.device)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(model_path))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id}
        self.start_seconds = time.time() - start

    def ready(self) -> float:
        return self.start_seconds

    def generate(self, prompts, sampling) -> list:
        import torch

        from rollouts.types import Sample

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        specs = [spec for spec in prompts for _ in range(sampling.n)]
        width = max(len(s.token_ids) for s in specs)
        ids = torch.full((len(specs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, spec in enumerate(specs):  # left padding, as generate needs
            ids[row, width - len(spec.token_ids):] = torch.tensor(spec.token_ids)
            mask[row, width - len(spec.token_ids):] = 1
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=True,
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, max_new_tokens=sampling.max_new_tokens,
                pad_token_id=self.pad_id, return_dict_in_generate=True, output_scores=True,
            )
        new = out.sequences[:, width:].cpu()
        logprobs = torch.stack([s.float().log_softmax(-1) for s in out.scores], dim=1).cpu()  # [B, T, V]
        samples = []
        for row, spec in enumerate(specs):
            tokens = new[row].tolist()
            end = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
            tokens = tokens[:end]
            lps = [float(logprobs[row, i, t]) for i, t in enumerate(tokens)]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            samples.append(Sample(
                request=spec.request, tier=spec.tier, token_ids=list(spec.token_ids) + tokens,
                loss_mask=[0] * len(spec.token_ids) + [1] * len(tokens),
                sampler_logprobs=[0.0] * len(spec.token_ids) + lps, text=spec.prefill + text,
                truncated=not tokens or tokens[-1] not in self.eos_ids, n_turns=1,
            ))
        return samples

    def sleep(self) -> None:
        """Free the GPU for the trainer: the model goes to CPU memory (vLLM's sleep level 1 does the same)."""
        import torch

        self.model.to("cpu")
        torch.cuda.empty_cache()

    def wake_up(self) -> None:
        self.model.to(self.device)

    def load_weights(self, named_arrays: list) -> float:
        """HF-named arrays from PolicyTrainer.get_weights (bf16 arrives as its int16 bit pattern)."""
        import numpy as np
        import torch

        start = time.time()
        state = {}
        with warnings.catch_warnings():  # arrays from the object store are read-only; load_state_dict only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for name, array in named_arrays:
                tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
                state[name] = tensor.view(torch.bfloat16) if tensor.dtype == torch.int16 else tensor
        self.model.load_state_dict(state, strict=False)  # a tied lm_head is not sent
        return time.time() - start
