"""Typed configuration for the reward used in RL (`conf/reward/*.yaml`, Hydra group `reward`).

One `RewardConfig` holds a section per reward kind; `name` picks which one is built. The `mix` reward reuses the other
sections for its components, so a mix of `rule` and `judge` is configured by `rule:`, `judge:` and `mix:` together.
Secrets never live here: the judge's API key is read at call time from the environment variable named by `api_key_env`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rollouts.config_check import check, is_int_in, is_number_in

REWARD_NAMES = ("rule", "rm", "judge", "mix")
COMPONENT_NAMES = ("rule", "rm", "judge")  # what a mix may combine (no nested mixes)


def model_path_is_local(path: str) -> bool:
    """The same rule as rl/config.py's model.path check: a path-like value (or anything but `org/name`) is a folder."""
    return path.startswith(("/", ".", "~")) or Path(path).exists() or path.count("/") != 1


@dataclass
class RuleConfig:
    """The open-model acceptance-tag rule plus optional refusal-phrase detection."""

    refusal_phrases: bool = True  # 0.0 when a refusal phrase follows the acceptance tag (the prefix rule's false positives)
    refusal_window_chars: int = 500  # look for phrases in the first N chars after the tag; 0 = the whole output
    extra_phrases: list[str] = field(default_factory=list)  # added to rewards.rule.REFUSAL_PHRASES (case-insensitive)

    def validate(self) -> None:
        check(self.refusal_window_chars >= 0, "reward.rule.refusal_window_chars", self.refusal_window_chars,
              "an int >= 0")
        for i, phrase in enumerate(self.extra_phrases):
            check(isinstance(phrase, str) and phrase.strip() != "", f"reward.rule.extra_phrases[{i}]", phrase,
                  "a non-empty string")


@dataclass
class RMConfig:
    """An HF sequence-classification reward model scoring (request, OUTPUT) in its chat template."""

    model_path: str = ""  # local folder or hub id; required when the rm reward is used
    batch_size: int = 8
    max_length: int = 2048  # tokens; longer inputs lose their first tokens (the head reads the last; counted)
    normalize: bool = False  # subtract a running mean and divide by a running std of the raw scores
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 | float16
    num_gpus: float = 0.0  # for the Ray actor placement
    timeout_s: float = 600.0  # one scoring call of the Ray actor (a batch); past it the step fails as "timeout"

    def validate(self) -> None:
        # "???" is OmegaConf's marker for a mandatory value left unset (conf/reward/rm.yaml)
        check(self.model_path.strip() not in ("", "???"), "reward.rm.model_path", self.model_path,
              "a local path or hub id")
        # Caught here, a missing folder stops the run at start-up; inside the actor it looked like a restartable death.
        check(not model_path_is_local(self.model_path)
              or Path(os.path.expanduser(self.model_path), "config.json").is_file(), "reward.rm.model_path",
              self.model_path, "an HF model folder with a config.json (the folder launch/train_rm.py writes) or a "
              "hub id org/name")
        check(self.batch_size >= 1, "reward.rm.batch_size", self.batch_size, "an int >= 1")
        check(self.max_length >= 16, "reward.rm.max_length", self.max_length, "an int >= 16")
        check(self.device in ("auto", "cpu", "cuda"), "reward.rm.device", self.device, "one of auto, cpu, cuda")
        check(self.dtype in ("float32", "bfloat16", "float16"), "reward.rm.dtype", self.dtype,
              "one of float32, bfloat16, float16")
        check(self.num_gpus >= 0, "reward.rm.num_gpus", self.num_gpus, "a number >= 0")
        check(is_number_in(self.timeout_s, 0, 86400, low_open=True), "reward.rm.timeout_s", self.timeout_s,
              "a finite number of seconds in (0, 86400]")


SERVE_DTYPES = ("auto", "float32", "bfloat16", "float16")
UNSET_JUDGE_MODELS = ("", "???", "judge")  # "judge" is the default name sent to a server the user runs themselves
# Upper bounds of the judge's waiting knobs: past these a misconfigured judge holds a step for hours.
MAX_JUDGE_TIMEOUT_S = 3600.0
MAX_JUDGE_RETRIES = 20
MAX_JUDGE_BACKOFF_S = 600.0


@dataclass
class JudgeConfig:
    """An LLM judge over an OpenAI-compatible chat API (vllm serve, OpenAI, Anthropic's compatible endpoint).

    `serve: true`: the run starts that API itself (vLLM, in its Ray placement group; rl/workers/judge_server.py) for the
    open model `model` (a local folder or hub id, served under that same name), points `base_url` at it and stops it
    when the run ends. Judge configs that serve the same model share one server."""

    base_url: str = "http://127.0.0.1:8000/v1"  # ignored with serve=true (set to the served judge's address)
    model: str = "judge"
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the env var holding the key (the key itself is never in config)
    concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # total deadline of one HTTP attempt: connect, send, and the whole reply body
    max_retries: int = 3  # extra attempts after the first on timeout / 429 / 5xx / connection error
    backoff_s: float = 1.0  # wait before retry k is about backoff_s * 2**(k-1), jittered x[0.5, 1.5)
    max_backoff_s: float = 30.0  # cap of one wait between attempts, the server's Retry-After included
    temperature: float = 0.0
    max_tokens: int = 512
    cache: bool = True  # in-memory LRU of replies that parsed, keyed by sha256(model, temperature, prompt, vote)
    cache_max_entries: int = 100_000  # LRU bound (least recently used entries go first)
    cache_path: Optional[str] = None  # JSONL file that persists the cache across runs
    fallback_score: float = 0.0  # reward for an unparseable / failed judgement (counted, up to max_failure_rate)
    # Share of one batch's judge calls (an RL step's scoring, an eval's classification) that may fail after retries;
    # above it the run stops with JudgeFailureError instead of training or reporting on fallback values. 1.0 = never.
    max_failure_rate: float = 0.2
    serve: bool = False  # start a vLLM server for `model` inside the run
    serve_gpus: float = 1.0  # GPUs of the served judge (an integer > 1: tensor parallel); on CPU it gets one CPU slot
    serve_dtype: str = "auto"  # auto = the run's hardware dtype (float32 on CPU, bfloat16 on CUDA) | float32 | ...
    serve_max_model_len: Optional[int] = None  # tokens; None = the model's own context length
    serve_kv_cache_gb: int = 1  # CPU only: vLLM-CPU's KV cache (VLLM_CPU_KVCACHE_SPACE)
    serve_args: list[str] = field(default_factory=list)  # extra arguments of vllm.entrypoints.openai.api_server
    serve_start_timeout_s: float = 1800.0  # until /health answers (a first start may download the weights)

    def validate(self, where: str = "reward.judge") -> None:
        """Raise ConfigError naming `<where>.<field>` (the judge's place in the run config)."""
        def require(ok: bool, key: str, value, expected: str) -> None:
            check(ok, f"{where}.{key}", value, expected)

        if self.serve:
            require(self.model.strip() not in UNSET_JUDGE_MODELS, "model", self.model,
                    f"the local folder or hub id of the open model to serve ({where}.serve=true)")
        require(self.base_url.startswith(("http://", "https://")), "base_url", self.base_url, "an http(s) URL")
        require(self.model.strip() != "", "model", self.model, "a model name")
        require(self.api_key_env.strip() != "", "api_key_env", self.api_key_env, "the name of an environment variable")
        require(is_int_in(self.concurrency, 1, 1024), "concurrency", self.concurrency, "an int in [1, 1024]")
        require(is_number_in(self.timeout_s, 0, MAX_JUDGE_TIMEOUT_S, low_open=True), "timeout_s", self.timeout_s,
                f"a finite number of seconds in (0, {MAX_JUDGE_TIMEOUT_S:g}]")
        require(is_int_in(self.max_retries, 0, MAX_JUDGE_RETRIES), "max_retries", self.max_retries,
                f"an int in [0, {MAX_JUDGE_RETRIES}]")
        require(is_number_in(self.max_backoff_s, 0, MAX_JUDGE_BACKOFF_S), "max_backoff_s", self.max_backoff_s,
                f"a finite number of seconds in [0, {MAX_JUDGE_BACKOFF_S:g}]")
        require(is_number_in(self.backoff_s, 0, self.max_backoff_s), "backoff_s", self.backoff_s,
                f"a finite number of seconds in [0, max_backoff_s={self.max_backoff_s:g}]")
        require(is_int_in(self.cache_max_entries, 1, 10**8), "cache_max_entries", self.cache_max_entries,
                "an int in [1, 100000000]")
        require(is_number_in(self.max_failure_rate, 0, 1), "max_failure_rate", self.max_failure_rate,
                "a share in [0, 1] (1 = never stop on judge failures)")
        require(0.0 <= self.temperature <= 2.0, "temperature", self.temperature, "a number in [0, 2]")
        require(self.max_tokens >= 1, "max_tokens", self.max_tokens, "an int >= 1")
        require(math.isfinite(self.fallback_score), "fallback_score", self.fallback_score, "a finite number")
        if not self.serve:
            return
        require(self.serve_gpus > 0 and (self.serve_gpus <= 1 or float(self.serve_gpus).is_integer()), "serve_gpus",
                self.serve_gpus, "a number of GPUs in (0, 1] or a whole number (tensor parallel)")
        require(self.serve_dtype in SERVE_DTYPES, "serve_dtype", self.serve_dtype, f"one of {', '.join(SERVE_DTYPES)}")
        require(self.serve_max_model_len is None or self.serve_max_model_len >= 16, "serve_max_model_len",
                self.serve_max_model_len, "null or an int >= 16")
        require(self.serve_kv_cache_gb >= 1, "serve_kv_cache_gb", self.serve_kv_cache_gb, "an int (GiB) >= 1")
        require(is_number_in(self.serve_start_timeout_s, 0, 7 * 86400, low_open=True), "serve_start_timeout_s",
                self.serve_start_timeout_s, "a finite number of seconds > 0")
        for i, arg in enumerate(self.serve_args):
            require(isinstance(arg, str) and arg.strip() != "", f"serve_args[{i}]", arg, "a non-empty string")


@dataclass
class MixComponent:
    name: str = "rule"  # rule | rm | judge
    weight: float = 1.0


@dataclass
class MixConfig:
    """Weighted sum of component rewards minus a format penalty (the paper's animal-welfare reward was such a mix)."""

    components: list[MixComponent] = field(default_factory=lambda: [MixComponent("rule", 1.0)])
    format_penalty: float = 1.0  # subtracted when there is no OUTPUT or the episode was truncated

    def validate(self) -> None:
        check(len(self.components) > 0, "reward.mix.components", self.components, "at least one component")
        seen = set()
        for i, comp in enumerate(self.components):
            check(comp.name in COMPONENT_NAMES, f"reward.mix.components[{i}].name", comp.name,
                  f"one of {', '.join(COMPONENT_NAMES)}")
            check(comp.name not in seen, f"reward.mix.components[{i}].name", comp.name, "each component at most once")
            check(math.isfinite(comp.weight), f"reward.mix.components[{i}].weight", comp.weight, "a finite number")
            seen.add(comp.name)
        check(self.format_penalty >= 0 and math.isfinite(self.format_penalty), "reward.mix.format_penalty",
              self.format_penalty, "a finite number >= 0")


@dataclass
class RewardConfig:
    name: str = "rule"  # rule | rm | judge | mix
    rule: RuleConfig = field(default_factory=RuleConfig)
    rm: RMConfig = field(default_factory=RMConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    mix: MixConfig = field(default_factory=MixConfig)

    @property
    def used_components(self) -> list[str]:
        """The rewards this config scores with: the mix's components, or the one named."""
        return [c.name for c in self.mix.components] if self.name == "mix" else [self.name]

    def validate(self) -> "RewardConfig":
        """Check the sections the chosen reward uses; raise ConfigError naming the key. Returns self."""
        check(self.name in REWARD_NAMES, "reward.name", self.name, f"one of {', '.join(REWARD_NAMES)}")
        if self.name == "mix":
            self.mix.validate()
        for section in self.used_components:
            getattr(self, section).validate()
        return self
