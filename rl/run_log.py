"""The run folder's train.log: opened first, so that a run that fails while starting leaves its traceback there.

Hydra's job logging writes `<hydra output dir>/train.log`; that is the run folder unless a sweep job sets run_dir or
the run resumes another folder. `log_to_file` adds a handler for `<run_dir>/train.log` unless one already writes it.
"""
from __future__ import annotations

import logging
from pathlib import Path

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
