"""Async client for an OpenAI-compatible chat API (`vllm serve`, OpenAI, Anthropic's OpenAI-compatible endpoint).

Plain `httpx` on `POST {base_url}/chat/completions`; no vendor SDK. What it adds over a bare request: a concurrency limit,
retries with exponential backoff on timeouts / connection errors / 429 / 5xx, a per-request timeout, and a cache keyed by
the SHA-256 of (model, temperature, messages, sample index) kept in memory and optionally appended to a JSONL file.
Failures are returned as `JudgeReply.error` and counted, never raised, so one bad request cannot stop an RL step.

The API key is read from the environment variable named by `JudgeConfig.api_key_env` when a request is sent; it is never
stored on the client, logged, or cached. A missing variable means no Authorization header (fine for a local server).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import httpx

from rewards.config import JudgeConfig

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # the assistant message, None on failure
    error: str | None = None  # "timeout" | "http_<status>" | "connection" | "bad_response" after all retries
    cached: bool = False


def cache_key(model: str, messages: Sequence[dict], temperature: float, sample_index: int) -> str:
    """Stable key: identical judge prompt + output (+ vote index for temperature > 0 voting) -> same key."""
    blob = json.dumps([model, temperature, sample_index, list(messages)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def auth_headers(cfg: JudgeConfig) -> dict[str, str]:
    """The bearer header with the key read from the environment variable the config names (none when unset)."""
    key = os.environ.get(cfg.api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


class JudgeClient:
    """`chat_many(list of message lists) -> list[JudgeReply]`; `counts` accumulates requests/retries/errors/cache hits."""

    def __init__(self, cfg: JudgeConfig):
        cfg.validate()
        self.cfg = cfg
        self.counts: Counter = Counter()
        self._cache: dict[str, str] = {}
        self._cache_lock = threading.Lock()
        if cfg.cache and cfg.cache_path and Path(cfg.cache_path).exists():
            self._load_cache(Path(cfg.cache_path))

    def __repr__(self) -> str:  # the config holds no secret, but say so explicitly for readers of logs
        return f"JudgeClient(base_url={self.cfg.base_url!r}, model={self.cfg.model!r}, key_from=${self.cfg.api_key_env})"

    def _load_cache(self, path: Path) -> None:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                self._cache[row["key"]] = row["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                self.counts["cache_bad_line"] += 1  # a torn last line after a crash must not stop a run

    def _remember(self, key: str, text: str) -> None:
        if not self.cfg.cache:
            return
        with self._cache_lock:
            self._cache[key] = text
            if self.cfg.cache_path:
                Path(self.cfg.cache_path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.cfg.cache_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")

    def _headers(self) -> dict[str, str]:
        return auth_headers(self.cfg)

    async def _post_once(self, http: httpx.AsyncClient, payload: dict) -> tuple[str | None, str | None, bool]:
        """(text, error, retryable) for one attempt."""
        try:
            response = await http.post("/chat/completions", json=payload, headers=self._headers())
        except httpx.TimeoutException:
            return None, "timeout", True
        except httpx.TransportError:
            return None, "connection", True
        if response.status_code != 200:
            return None, f"http_{response.status_code}", response.status_code in RETRY_STATUS
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None, "bad_response", False
        if not isinstance(text, str):
            return None, "bad_response", False
        return text, None, False

    async def _chat(self, http: httpx.AsyncClient, limit: asyncio.Semaphore, messages: Sequence[dict],
                    temperature: float, sample_index: int) -> JudgeReply:
        key = cache_key(self.cfg.model, messages, temperature, sample_index)
        if self.cfg.cache and key in self._cache:
            self.counts["cache_hit"] += 1
            return JudgeReply(self._cache[key], cached=True)
        payload = {"model": self.cfg.model, "messages": list(messages), "temperature": temperature,
                   "max_tokens": self.cfg.max_tokens}
        error = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt > 0:
                self.counts["retry"] += 1
                await asyncio.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            async with limit:
                self.counts["request"] += 1
                text, error, retryable = await self._post_once(http, payload)
            if text is not None:
                self._remember(key, text)
                return JudgeReply(text)
            self.counts[f"attempt_error/{error}"] += 1
            if not retryable:
                break
        self.counts["error"] += 1
        self.counts[f"error/{error}"] += 1
        return JudgeReply(None, error=error)

    async def achat_many(self, conversations: Sequence[Sequence[dict]], temperature: float | None = None,
                         sample_indices: Sequence[int] | None = None) -> list[JudgeReply]:
        temp = self.cfg.temperature if temperature is None else temperature
        indices = sample_indices if sample_indices is not None else [0] * len(conversations)
        limit = asyncio.Semaphore(self.cfg.concurrency)
        timeout = httpx.Timeout(self.cfg.timeout_s)
        limits = httpx.Limits(max_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(base_url=self.cfg.base_url.rstrip("/"), timeout=timeout, limits=limits) as http:
            return list(await asyncio.gather(
                *(self._chat(http, limit, msgs, temp, i) for msgs, i in zip(conversations, indices))))

    def chat_many(self, conversations: Sequence[Sequence[dict]], temperature: float | None = None,
                  sample_indices: Sequence[int] | None = None) -> list[JudgeReply]:
        """Blocking form. Works inside a running event loop too (then it runs the requests on a helper thread)."""
        coro = self.achat_many(conversations, temperature, sample_indices)
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
