"""The run folder: its name, its one writer (a lock) and its train.log.

The default run folder of a single run (`hydra.run.dir`) is stable for a requeued Slurm job and unique otherwise:

- In a Slurm job: `outputs/<exp_name>/slurm-<job id>` (`<array job>_<task>` for an array task). A requeued job keeps
  its id, so it finds its own checkpoints there and `resume=auto` continues them. A second run of the same experiment
  inside one allocation (salloc) would find the first one's folder: give it a run_dir.
- Elsewhere: `outputs/<exp_name>/<date>_<time>-<pid>`; two launches in the same second differ by pid, and the run
  folder's lock (rl/run/folder.py) stops a second writer whatever the names.
- `run_dir=PATH` wins, and Hydra writes its own files (.hydra/, train.log) there too.
Sweeps use hydra.sweep.dir/subdir: the sweep folder is resolved once by the launching process and travels with the
pickled job, so a requeued sweep job finds its subfolder again.

One writer per run folder: `<run_dir>/.lock`, held with flock for the life of the run. Two processes writing one run folder delete each other's checkpoints (a fresh run prunes the other's newer steps) and
temp folders, and interleave metrics.jsonl. The lock makes the second one stop at start-up, naming the holder (pid,
host, start time, command) from the lock file. The kernel drops an flock when its holder exits, however it exits
(kill -9 included), so a stale lock file never blocks the next run. The file descriptor is not inherited by child
processes (Python opens files non-inheritable), so Ray's processes never keep a lock alive after the driver is gone.
On network filesystems flock needs support from the mount (NFSv4 emulates it with a POSIX lock; Lustre needs
`-o flock`); where it is unsupported the lock fails with an OSError naming the file.

The run folder's train.log is opened first, so that a run that fails while starting leaves its traceback there.
Hydra's job logging writes `<hydra output dir>/train.log`; that is the run folder unless a sweep job sets run_dir or
the run resumes another folder. `log_to_file` adds a handler for `<run_dir>/train.log` unless one already writes it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

# ---- the folder's name -----------------------------------------------------------------------------------------------
RESOLVER = "afrl_run_dir"


def slurm_job_name(environ=os.environ) -> str | None:
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm-{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    if environ.get("SLURM_JOB_ID"):
        return f"slurm-{environ['SLURM_JOB_ID']}"
    return None


def default_run_name(environ=os.environ) -> str:
    return slurm_job_name(environ) or f"{datetime.now():%Y-%m-%d_%H-%M-%S}-{os.getpid()}"


def run_dir_default(run_dir: str | None, exp_name: str) -> str:
    return str(run_dir) if run_dir else f"outputs/{exp_name}/{default_run_name()}"


def register_resolver() -> None:
    # Cached: Hydra resolves hydra.run.dir more than once, and the time must not move between those.
    OmegaConf.register_new_resolver(RESOLVER, run_dir_default, use_cache=True, replace=True)


# ---- one writer: the lock --------------------------------------------------------------------------------------------
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


# ---- train.log -------------------------------------------------------------------------------------------------------
LOG_NAME = "train.log"
FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _writes(handler: logging.Handler, path: Path) -> bool:
    return isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == path.resolve()


def log_to_file(run_dir: Path) -> Path:
    path = Path(run_dir) / LOG_NAME
    root, afrl = logging.getLogger(), logging.getLogger("afrl")
    if not any(_writes(h, path) for h in (*root.handlers, *afrl.handlers)):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(FORMAT))
        afrl.addHandler(handler)
    return path


def log_failure_to_files(error: BaseException) -> int:
    """Write `error` with its traceback to every train.log (Hydra's and ours), not to the console, where Hydra prints
    it already. Returns the number of files written."""
    logger = logging.getLogger("afrl")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "run stopped: %s: %s",
                               (type(error).__name__, error), (type(error), error, error.__traceback__))
    handlers = [h for h in (*logging.getLogger().handlers, *logger.handlers) if isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.handle(record)
    return len(handlers)
