"""One writer per run folder: `<run_dir>/.lock`, held with flock for the life of the run.

Two processes writing one run folder delete each other's checkpoints (a fresh run prunes the other's newer steps) and
temp folders, and interleave metrics.jsonl. The lock makes the second one stop at start-up, naming the holder (pid,
host, start time, command) from the lock file. The kernel drops an flock when its holder exits, however it exits
(kill -9 included), so a stale lock file never blocks the next run. The file descriptor is not inherited by child
processes (Python opens files non-inheritable), so Ray's processes never keep a lock alive after the driver is gone.
On network filesystems flock needs support from the mount (NFSv4 emulates it with a POSIX lock; Lustre needs
`-o flock`); where it is unsupported the lock fails with an OSError naming the file.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderLocked(RuntimeError):
    """Another process holds the run folder; the message names it."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._file = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise RunFolderLocked(
                f"run folder {self.path.parent} is in use by {holder} (lock file {self.path}); two runs writing one "
                "folder delete each other's checkpoints. Wait for that run to end, or give this one another run_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv}) + "\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return (f"pid {info['pid']} on {info['host']} since {info['started']} "
                f"({' '.join(str(a) for a in info.get('argv', []))})")
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file holds no readable owner yet)"
