"""Peak resident memory of this process and of its child processes (Ray's daemons and actors), sampled in a thread.

TRL runs in this (driver) process, afrl's roles in Ray worker processes that descend from it; so the driver's own RSS is
TRL's side (plus the afrl driver's small state: a tokenizer, the request list) and the children's summed RSS is
afrl's side (vLLM engine, DeepSpeed trainer, Ray's GCS and raylet).
"""
from __future__ import annotations

import threading


class RssSampler:
    def __init__(self, interval_s: float = 0.5):
        import psutil

        self.process = psutil.Process()
        self.interval_s = interval_s
        self.peak_self = 0
        self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        import psutil

        self.peak_self = max(self.peak_self, self.process.memory_info().rss)
        total = 0
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a worker that exited between listing and reading
        self.peak_children = max(self.peak_children, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
