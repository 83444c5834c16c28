"""`reward=rm`: an HF sequence-classification reward model scoring (request, final OUTPUT) pairs in batches.

Faithful to the paper's helpful-only setting (Greenblatt et al. 2024): the preference model sees only the user request and
the final output, rendered by `rewards.rm_format` (the same code that formats RM training data). Any local folder or hub
id loadable by `AutoModelForSequenceClassification` works; the score is the logit of label 0 (a 1-label RM head).
Optional running mean/std normalisation keeps the reward scale stable across RMs. Left out: ensembles, per-tier
statistics, length penalties.

`RewardModelScorer` is a plain class (usable in-process); `make_rm_actor` places it as a Ray actor, and `RMReward`
accepts either. A call to the actor waits at most `reward.rm.timeout_s` (then TimeoutError, which the RL loop treats
as a hung actor); the cluster waits for the actor's `ready()` at start-up, with the engines and trainers.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from rewards.base import RewardResult
from rewards.config import RMConfig
from rewards.rm_format import render_for_rm
from rollouts.types import RewardInput


class RunningMoments:
    """Running mean and (population) std of every value seen, by Welford's update (numerically stable)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def update(self, values: Sequence[float]) -> None:
        for value in values:
            self.count += 1
            delta = value - self.mean
            self.mean += delta / self.count
            self._m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / self.count) if self.count > 0 else 0.0

    def normalise(self, values: Sequence[float], eps: float = 1e-6) -> list[float]:
        # A single value has std 0: centre it but do not divide by ~0.
        scale = self.std if self.std > eps else 1.0
        return [(v - self.mean) / scale for v in values]


@dataclass
class RMScores:
    scores: list[float]  # normalised when RMConfig.normalize, else equal to raw
    raw: list[float]
    n_truncated: int  # inputs longer than max_length (their first tokens were dropped)


class RewardModelScorer:
    """Loads the RM once and scores batches of (request, output) text pairs."""

    def __init__(self, cfg: RMConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        cfg.validate()
        self.cfg = cfg
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                cfg.model_path, dtype=getattr(torch, cfg.dtype))
        except OSError as err:
            raise ValueError(f"reward.rm.model_path: cannot load a sequence-classification model from "
                             f"{cfg.model_path!r}: {err}") from err
        if self.tokenizer.pad_token is None:  # many causal backbones ship without one; the head needs it to find the end
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        # The classifier reads the last token: when too long, drop the beginning, not the end of the answer.
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        self.model.to(self.device).eval()
        self.moments = RunningMoments()

    def ready(self) -> bool:
        """Answered once the model is loaded (the constructor ran): the cluster's start-up wait calls it."""
        return True

    def render(self, request: str, output: str) -> str:
        return render_for_rm(self.tokenizer, request, output)

    def score(self, requests: Sequence[str], outputs: Sequence[str]) -> RMScores:
        import torch

        if len(requests) != len(outputs):
            raise ValueError(f"RewardModelScorer.score: {len(requests)} requests but {len(outputs)} outputs")
        texts = [self.render(r, o) for r, o in zip(requests, outputs)]
        raw: list[float] = []
        n_truncated = 0
        for start in range(0, len(texts), self.cfg.batch_size):
            chunk = texts[start:start + self.cfg.batch_size]
            # Chat templates already contain the special tokens; adding BOS again would shift what the RM was trained on.
            lengths = [len(ids) for ids in self.tokenizer(chunk, add_special_tokens=False)["input_ids"]]
            n_truncated += sum(n > self.cfg.max_length for n in lengths)
            enc = self.tokenizer(chunk, add_special_tokens=False, padding=True, truncation=True,
                                 max_length=self.cfg.max_length, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits
            raw.extend(logits[:, 0].float().cpu().tolist())
        scores = raw
        if self.cfg.normalize:
            self.moments.update(raw)
            scores = self.moments.normalise(raw)
        return RMScores(scores, raw, n_truncated)


def make_rm_actor(cfg: RMConfig, **ray_options: Any):
    """A `RewardModelScorer` as a Ray actor (GPUs from cfg.num_gpus unless given); call `.score.remote(...)`."""
    import ray

    options = {"num_gpus": cfg.num_gpus, **ray_options}
    return ray.remote(RewardModelScorer).options(**options).remote(cfg)


class RMReward:
    """The RL reward: RM score of each OUTPUT. A missing OUTPUT is scored as an empty answer (counted as a
    format_failure); `reward=mix` adds an explicit format penalty on top."""

    name = "rm"

    def __init__(self, scorer: Any, timeout_s: float = RMConfig.timeout_s):
        self.scorer = scorer  # RewardModelScorer, or a Ray actor handle of one
        self.timeout_s = timeout_s  # for the actor's answer (reward.rm.timeout_s)
        self._remote = hasattr(getattr(scorer, "score", None), "remote")

    def score(self, batch: Sequence[RewardInput]) -> RewardResult:
        counts: Counter = Counter()
        for inp in batch:
            if inp.output is None:
                counts["format_failure"] += 1
                counts[f"format_failure/{inp.parse_failure or 'no_output'}"] += 1
        requests = [inp.request for inp in batch]
        outputs = [inp.output if inp.output is not None else "" for inp in batch]
        if self._remote:
            import ray

            try:
                result = ray.get(self.scorer.score.remote(requests, outputs), timeout=self.timeout_s)
            except ray.exceptions.GetTimeoutError as error:  # a TimeoutError: the run's fault handling says "timeout"
                raise TimeoutError(f"reward model scoring (reward.rm.timeout_s): 1 of 1 calls unfinished after "
                                   f"{self.timeout_s}s") from error
        else:
            result = self.scorer.score(requests, outputs)
        if result.n_truncated:
            counts["truncated_input"] += result.n_truncated
        return RewardResult(list(result.scores), counts)
