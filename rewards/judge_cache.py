"""The judge client's reply cache: a bounded LRU in memory, optionally appended to a JSONL file across runs.

Only replies that parsed are stored (the client remembers a reply after its caller's parser accepted it), and a hit is
parsed again before it is used: an entry that no longer parses (a file written by an older version, a changed parser)
is dropped and the request goes to the server. Thread-safe: the blocking client may run on a helper thread.
"""
from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from pathlib import Path


class ReplyCache:
    def __init__(self, max_entries: int, path: str | None = None, counts: Counter | None = None):
        self.max_entries = max_entries
        self.path = Path(path) if path else None
        self.counts = counts if counts is not None else Counter()
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, path: Path) -> None:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                self._put(row["key"], row["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                self.counts["cache_bad_line"] += 1  # a torn last line after a crash must not stop a run

    def _put(self, key: str, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError("cached text must be a string")
        self._entries[key] = text
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.counts["cache_evicted"] += 1

    def get(self, key: str) -> str | None:
        with self._lock:
            text = self._entries.get(key)
            if text is not None:
                self._entries.move_to_end(key)
            return text

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def remember(self, key: str, text: str) -> None:
        """Store a reply whose parse succeeded (the caller's promise); appended to the JSONL file when there is one."""
        with self._lock:
            self._put(key, text)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
