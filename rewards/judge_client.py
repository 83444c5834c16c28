"""Async client for an OpenAI-compatible chat API (`vllm serve`, OpenAI, Anthropic's OpenAI-compatible endpoint).

Plain `httpx` on `POST {base_url}/chat/completions`; no vendor SDK. What it adds over a bare request:
- a concurrency limit, and a total deadline per attempt (`timeout_s`: connect, send and the whole reply body; httpx's
  own timeout bounds each read only, so a server trickling bytes could hold a request for ever);
- retries on timeouts / connection errors / 408, 409, 425, 429, 5xx, each after a jittered exponential backoff
  (`backoff_s * 2**(k-1)` times a random factor in [0.5, 1.5)), or after the server's `Retry-After` (seconds or an
  HTTP date) when that is longer; every wait is capped at `max_backoff_s`;
- the caller's parser applied to every reply (`parse=`): a reply that does not parse is a failure (`error="parse"`);
- a bounded LRU cache (rewards/judge_cache.py) of replies that parsed, keyed by the SHA-256 of (model, temperature,
  messages, sample index); a reply that did not parse is never stored, so the next call asks the server again.
Failures are returned as `JudgeReply.error` (+ a `detail` naming the endpoint and model) and counted; whether a batch
failed too often is the caller's check (rewards/judge_errors.py, `JudgeClient.check`).

The API key is read from the environment variable named by `JudgeConfig.api_key_env` when a request is sent; it is never
stored on the client, logged, cached, or put in an error (a server echoing it has it replaced by `***`). A missing
variable means no Authorization header (fine for a local server).
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import httpx

from rewards.config import JudgeConfig
from rewards.judge_cache import ReplyCache
from rewards.judge_errors import check_failure_rate

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
DETAIL_CHARS = 300  # of a server's error body or an unparseable reply, quoted in errors


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # the assistant message; None when no reply came
    error: str | None = None  # "timeout" | "http_<status>" | "connection" | "bad_response" | "parse"; None = parsed
    parsed: Any = None  # what the caller's parser made of `text` (None on any failure)
    detail: str | None = None  # the failure in words: endpoint, model, status or exception, the start of the body


def cache_key(model: str, messages: Sequence[dict], temperature: float, sample_index: int) -> str:
    """Stable key: identical judge prompt + output (+ vote index for temperature > 0 voting) -> same key."""
    blob = json.dumps([model, temperature, sample_index, list(messages)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def auth_headers(cfg: JudgeConfig) -> dict[str, str]:
    """The bearer header with the key read from the environment variable the config names (none when unset)."""
    key = os.environ.get(cfg.api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def redact(text: str, cfg: JudgeConfig) -> str:
    """`text` with the configured key (if a server echoed it) replaced by ***."""
    key = os.environ.get(cfg.api_key_env)
    return text.replace(key, "***") if key else text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_delay(attempt: int, cfg: JudgeConfig, retry_after: float | None, rng: random.Random) -> float:
    """Wait before attempt `attempt` (1 = the first retry): jittered exponential backoff, at least the server's
    Retry-After (plus up to 10% so clients told the same time do not return together), at most `max_backoff_s`."""
    delay = cfg.backoff_s * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5)
    if retry_after is not None:
        delay = max(delay, retry_after * rng.uniform(1.0, 1.1))
    return min(delay, cfg.max_backoff_s)


def _safe_parse(parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except Exception:  # noqa: BLE001 - a parser that trips over a strange reply has not parsed it
        return None


@dataclass
class _Attempt:
    text: str | None = None
    error: str | None = None
    detail: str = ""
    retryable: bool = False
    retry_after: float | None = None


class JudgeClient:
    """`chat_many(conversations, parse=...) -> list[JudgeReply]`; `counts` accumulates requests / retries / errors /
    cache hits. `where` is the config's place in the run config (reward.judge, classifier.judge, ...) for errors."""

    def __init__(self, cfg: JudgeConfig, where: str = "reward.judge"):
        cfg.validate(where)
        self.cfg, self.where = cfg, where
        self.counts: Counter = Counter()
        self.cache = ReplyCache(cfg.cache_max_entries, cfg.cache_path, self.counts) if cfg.cache else None
        self._rng = random.Random()
        self.last_error: str | None = None

    def __repr__(self) -> str:  # the config holds no secret, but say so explicitly for readers of logs
        return f"JudgeClient(base_url={self.cfg.base_url!r}, model={self.cfg.model!r}, key_from=${self.cfg.api_key_env})"

    @property
    def endpoint(self) -> str:
        return f"{self.cfg.base_url.rstrip('/')}/chat/completions"

    def check(self, replies: Sequence[JudgeReply]) -> None:
        """Raise JudgeFailureError when too many of one batch's replies failed (this config's max_failure_rate)."""
        check_failure_rate(replies, self.where, self.cfg.max_failure_rate)

    async def _post_once(self, http: httpx.AsyncClient, payload: dict) -> _Attempt:
        try:
            # The whole attempt, body included, under one deadline (httpx's timeout restarts at every byte read).
            request = http.post("/chat/completions", json=payload, headers=auth_headers(self.cfg))
            response = await asyncio.wait_for(request, timeout=self.cfg.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return _Attempt(error="timeout", retryable=True,
                            detail=f"no complete reply within {self.where}.timeout_s={self.cfg.timeout_s:g}s")
        except httpx.TransportError as err:
            return _Attempt(error="connection", retryable=True, detail=f"{type(err).__name__}: {err}")
        if response.status_code != 200:
            return _Attempt(error=f"http_{response.status_code}", retryable=response.status_code in RETRY_STATUS,
                            retry_after=parse_retry_after(response.headers.get("Retry-After")),
                            detail=f"HTTP {response.status_code}: {response.text[:DETAIL_CHARS]!r}")
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            return _Attempt(error="bad_response",
                            detail=f"HTTP 200 but not a chat completion: {response.text[:DETAIL_CHARS]!r}")
        return _Attempt(text=text)

    def _failed(self, error: str, detail: str, text: str | None = None) -> JudgeReply:
        if error == "parse":  # answered, in the wrong format: not an error of the request
            self.counts["parse_failure"] += 1
        else:
            self.counts["error"] += 1
            self.counts[f"error/{error}"] += 1
        detail = redact(f"POST {self.endpoint} (model {self.cfg.model!r}): {detail}", self.cfg)
        self.last_error = detail
        return JudgeReply(text, error=error, detail=detail)

    async def _chat(self, http: httpx.AsyncClient, limit: asyncio.Semaphore, messages: Sequence[dict],
                    temperature: float, sample_index: int, parse: Callable[[str], Any] | None) -> JudgeReply:
        key = cache_key(self.cfg.model, messages, temperature, sample_index)
        if self.cache is not None and parse is not None:
            text = self.cache.get(key)
            if text is not None:
                parsed = _safe_parse(parse, text)
                if parsed is not None:
                    self.counts["cache_hit"] += 1
                    return JudgeReply(text, parsed=parsed)
                self.cache.drop(key)
                self.counts["cache_dropped_unparseable"] += 1
        payload = {"model": self.cfg.model, "messages": list(messages), "temperature": temperature,
                   "max_tokens": self.cfg.max_tokens}
        attempt = _Attempt()
        for number in range(self.cfg.max_retries + 1):
            if number > 0:
                self.counts["retry"] += 1
                await asyncio.sleep(retry_delay(number, self.cfg, attempt.retry_after, self._rng))
            async with limit:
                self.counts["request"] += 1
                attempt = await self._post_once(http, payload)
            if attempt.text is not None:
                break
            self.counts[f"attempt_error/{attempt.error}"] += 1
            if not attempt.retryable:
                break
        if attempt.text is None:
            return self._failed(attempt.error or "connection", attempt.detail)
        if parse is None:
            return JudgeReply(attempt.text, parsed=attempt.text)  # nothing checked it: not cached
        parsed = _safe_parse(parse, attempt.text)
        if parsed is None:
            return self._failed("parse", f"the reply does not parse: {attempt.text[:DETAIL_CHARS]!r}", attempt.text)
        if self.cache is not None:
            self.cache.remember(key, attempt.text)
        return JudgeReply(attempt.text, parsed=parsed)

    async def achat_many(self, conversations: Sequence[Sequence[dict]], temperature: float | None = None,
                         sample_indices: Sequence[int] | None = None,
                         parse: Callable[[str], Any] | None = None) -> list[JudgeReply]:
        temp = self.cfg.temperature if temperature is None else temperature
        indices = sample_indices if sample_indices is not None else [0] * len(conversations)
        limit = asyncio.Semaphore(self.cfg.concurrency)
        timeout = httpx.Timeout(self.cfg.timeout_s)
        limits = httpx.Limits(max_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(base_url=self.cfg.base_url.rstrip("/"), timeout=timeout, limits=limits) as http:
            return list(await asyncio.gather(
                *(self._chat(http, limit, msgs, temp, i, parse) for msgs, i in zip(conversations, indices))))

    def chat_many(self, conversations: Sequence[Sequence[dict]], temperature: float | None = None,
                  sample_indices: Sequence[int] | None = None,
                  parse: Callable[[str], Any] | None = None) -> list[JudgeReply]:
        """Blocking form. Works inside a running event loop too (then it runs the requests on a helper thread).
        `parse(text)` -> the parsed answer or None; only replies it accepts are cached (none without a parser)."""
        coro = self.achat_many(conversations, temperature, sample_indices, parse)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["value"] = asyncio.run(coro)
            except BaseException as err:  # re-raised in the caller's thread below
                outcome["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]
