"""Atomic, verifiable checkpoints and the rules for resuming from them.

Layout of `<run_dir>/checkpoints/step_000012/`: `deepspeed/` (module, optimizer, scheduler; written by every trainer
rank), `rng_rank<r>.json` (each rank's RNG states), `critic/` (PPO only), `driver_state.json` (step, data cursor, W&B
run id, KL controller, non-finite guard, driver RNG states, resolved config), `manifest.json` (every other file's
relative path, size and sha256), `COMPLETE` (written last). `<run_dir>/checkpoints/latest` names the newest complete
one. Nothing is pickled: DeepSpeed's files are read with torch.load(weights_only=True) (rl/workers/safe_load.py), the
rest is JSON, so loading a checkpoint someone else wrote runs none of its code.

Why a checkpoint is never half-written: everything goes into `.tmp-step_N/`, which is renamed into place only after
the manifest and COMPLETE are written; `latest` is replaced atomically after that. A writer killed at any point leaves
the previous checkpoint and `latest` untouched (the stale `.tmp-*` folder is removed by the next save; a save that
fails removes its own).

Two levels of checking, because hashing is slow for multi-GB checkpoints (sha256 reads every byte, ~1 GB/s per core):
- `latest_checkpoint` (every resume) checks that each manifest file exists with its recorded size: this catches
  truncated writes and deleted files at the cost of one stat per file, and skips a bad checkpoint for an older one.
- `verify_checkpoint(path)` recomputes every sha256: at every resume before anything is loaded (`load_driver_state(
  verify_hashes=True)`), at an export, and explicitly (e.g. after a copy).
The manifest is computed by the driver, so on several nodes the checkpoint folder must be on a shared filesystem (it
already must be, for a resume on other nodes).

Which checkpoint a run starts from: rl/run/resume.py. Resume rules (`check_resume_compatible`): a resume is refused when
the saved resolved config differs from the current one in a field that changes the run; fields that only change how
long, where or how fast it runs are allowed. Any field not listed in RUN_INVARIANT_KEYS counts as run-changing, so a
new config field is safe by default.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from rl.workers import rng_state

log = logging.getLogger("afrl")

COMPLETE = "COMPLETE"
MANIFEST = "manifest.json"
DRIVER_STATE = "driver_state.json"
LEGACY_DRIVER_STATE = "driver_state.pt"  # pickled by afrl before 2026-12: refused on load
MANIFEST_FORMAT = 1
_HASH_CHUNK = 8 * 1024 * 1024

# Config fields whose change does not change what a resumed run computes (prefixes match whole dotted segments).
RUN_INVARIANT_KEYS = (
    "total_steps", "resume", "run_dir", "exp_name", "dry_run", "classifier", "resources",
    "eval", "logger", "ckpt", "ray", "hardware",
    "rollout.sync_timeout_s", "rollout.kv_cache_gb", "rollout.gpu_memory_utilization", "rollout.enforce_eager",
    "rollout.block_size", "rollout.weight_sync",  # how the weights travel, not what they are
    "model.name", "model.gradient_checkpointing",
    "fault",
    "data.allow_changed",  # an override for the resume itself (rl/run/input_checks.py), not a change to the run
)


class CheckpointError(ValueError):
    """A checkpoint folder that is incomplete or damaged; the message names the folder and the bad file."""


class ResumeConfigError(ValueError):
    """A resume whose config differs from the checkpoint's in fields that change the run; the message names them."""


# ---- paths and RNG ---------------------------------------------------------------------------------------------------
def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step_"))


def restore_driver_rng(state: dict, where: str = DRIVER_STATE) -> None:
    rng_state.restore(state, where)


# ---- writing ---------------------------------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, step: int, driver_state: dict, save_ranks: Callable[[str], None], keep_last: int) -> Path:
    """`save_ranks(tmp_dir)` makes every trainer rank (and the critic) write its part; then the driver state, the
    manifest and COMPLETE are added and the folder is renamed into place. Returns the final folder. A save that fails
    removes its temp folder before the error goes on."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"  # the pid: a writer only ever removes its own or a dead one's
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_ranks(str(tmp))
        driver_rng = rng_state.capture(cuda=False)  # the driver process uses no GPU generator
        _write_synced(tmp / DRIVER_STATE, json.dumps({**driver_state, "step": step, "rng": driver_rng}) + "\n")
        write_manifest(tmp)
        _write_synced(tmp / COMPLETE, f"{step}\n")
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Move an existing folder of the same step aside instead of deleting it first, so no instant lacks both.
    displaced = root / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        shutil.rmtree(displaced, ignore_errors=True)
        os.replace(final, displaced)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / "latest", final.name)
    shutil.rmtree(displaced, ignore_errors=True)
    _prune(root, step, keep_last)
    return final


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    _write_synced(tmp, text)
    os.replace(tmp, path)


def _writer_gone(folder: Path) -> bool:
    """A `.tmp-step_N-<pid>` / `.old-step_N-<pid>` folder whose writer is this process or no longer runs here (the run
    folder's lock, rl/run/folder.py, rules out a live writer on another host)."""
    pid = folder.name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return True  # written before temp folders carried their writer's pid
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _prune(root: Path, step: int, keep_last: int) -> None:
    """Keep the newest `keep_last` complete checkpoints up to `step`; drop temp folders of writers that are gone.

    A checkpoint newer than `step` belongs to a timeline that was abandoned by resuming from an earlier checkpoint
    (only an explicit resume=<older checkpoint> does that: a fresh run in a folder with checkpoints is refused); it is
    removed, with a warning, so that `latest_checkpoint` can never fall back to it.
    """
    for stale in list(root.glob(".tmp-step_*")) + list(root.glob(".old-step_*")):
        if _writer_gone(stale):
            shutil.rmtree(stale, ignore_errors=True)
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for abandoned in (p for p in steps if _step_of(p) > step):
        log.warning("removing checkpoint %s: newer than step %d, from the timeline abandoned by resuming from an "
                    "earlier checkpoint", abandoned, step)
        shutil.rmtree(abandoned, ignore_errors=True)
    complete = [p for p in steps if _step_of(p) <= step and (p / COMPLETE).exists()]
    for old in complete[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


# ---- the manifest ----------------------------------------------------------------------------------------------------
def _files_of(folder: Path) -> list[Path]:
    own = {folder / MANIFEST, folder / COMPLETE}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p not in own)


def _sha256_and_sync(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
        os.fsync(f.fileno())  # the data is on disk before COMPLETE claims it is
    return digest.hexdigest()


def _hash_all(paths: list[Path]) -> list[str]:
    # hashlib releases the GIL on large buffers: threads hash several rank files at once.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_sha256_and_sync, paths))


def write_manifest(folder: Path) -> dict:
    """Record every file under `folder` (except the top-level manifest and COMPLETE): relative path, size, sha256."""
    folder = Path(folder)
    paths = _files_of(folder)
    digests = _hash_all(paths)
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": [
            {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": digest}
            for p, digest in zip(paths, digests)
        ],
    }
    _write_synced(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(checkpoint: Path) -> dict:
    path = Path(checkpoint) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {checkpoint}: no {MANIFEST} (written by an older afrl, or damaged)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        _ = [(entry["path"], int(entry["size"]), entry["sha256"]) for entry in files]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint}: {MANIFEST} is unreadable ({err})") from err
    return manifest


def verify_checkpoint(checkpoint: Path, hashes: bool = True) -> None:
    """Raise CheckpointError naming the first bad file: missing, wrong size or (with `hashes`) wrong sha256.

    `hashes=False` is the fast check `latest_checkpoint` uses (one stat per file); the full check reads every byte.
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / COMPLETE).is_file():
        raise CheckpointError(f"checkpoint {checkpoint}: no {COMPLETE} marker (the write did not finish)")
    files = read_manifest(checkpoint)["files"]
    for entry in files:
        path = checkpoint / entry["path"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint}: file {entry['path']} listed in {MANIFEST} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(
                f"checkpoint {checkpoint}: file {entry['path']} has {size} bytes, {MANIFEST} says {entry['size']}"
            )
    if not hashes:
        return
    digests = _hash_all([checkpoint / entry["path"] for entry in files])
    for entry, digest in zip(files, digests):
        if digest != entry["sha256"]:
            raise CheckpointError(
                f"checkpoint {checkpoint}: file {entry['path']} has sha256 {digest}, {MANIFEST} says {entry['sha256']}"
            )


# ---- finding and loading ---------------------------------------------------------------------------------------------
def _usable(checkpoint: Path) -> bool:
    try:
        verify_checkpoint(checkpoint, hashes=False)
    except CheckpointError as err:
        log.warning("skipping checkpoint: %s", err)
        return False
    return True


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run whose files all have their manifest sizes, or None.

    `latest` is tried first; if it names a damaged checkpoint, older ones are tried newest first (each skip is logged).
    """
    root = checkpoints_dir(run_dir)
    pointer = root / "latest"
    tried: set[Path] = set()
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / COMPLETE).exists():
            if _usable(candidate):
                return candidate
            tried.add(candidate)
    complete = sorted((p for p in root.glob("step_*") if (p / COMPLETE).exists()), reverse=True)
    return next((c for c in complete if c not in tried and _usable(c)), None)


def load_driver_state(checkpoint: Path, verify_hashes: bool = False) -> dict:
    """The driver state of a checkpoint (JSON: step, data cursor, W&B id, KL controller, guard, config, RNG).

    `verify_hashes` first checks every file of the checkpoint against its manifest (sha256), before anything of it
    is loaded: a resume does, so a damaged file stops it here, naming the file. The old pickled driver_state.pt is
    refused (unpickling a file can run code), naming the file."""
    checkpoint = Path(checkpoint)
    path = checkpoint / DRIVER_STATE
    if not path.is_file() and (checkpoint / LEGACY_DRIVER_STATE).is_file():
        raise CheckpointError(
            f"{checkpoint / LEGACY_DRIVER_STATE}: driver state in the old pickle format, which afrl no longer loads "
            f"(unpickling a file can run code); expected {DRIVER_STATE}. Resume from a checkpoint written by this "
            "version of afrl, or start a fresh run (resume=false)."
        )
    if verify_hashes:
        verify_checkpoint(checkpoint, hashes=True)
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint {checkpoint}: no {DRIVER_STATE}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a JSON driver state ({err})") from err
    missing = [key for key in ("step", "rng") if not isinstance(state, dict) or key not in state]
    if missing or not isinstance(state["step"], int) or isinstance(state["step"], bool):
        found = missing or [f"step={state['step']!r}"]
        raise CheckpointError(f"{path}: driver state lacks or has a bad {', '.join(map(str, found))}")
    return state


def run_dir_of(checkpoint: Path) -> Path:
    return Path(checkpoint).parent.parent


# ---- config compatibility --------------------------------------------------------------------------------------------
_ABSENT = "<absent>"


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def config_differences(saved: dict, current: dict) -> list[str]:
    """Every leaf field (dotted key) whose value differs, as 'key: checkpoint X, now Y' ('<absent>' when missing)."""
    old, new = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before != after:
            lines.append(f"{key}: checkpoint {before!r}, now {after!r}")
    return lines


def check_resume_compatible(saved: dict, current: dict, allow: Iterable[str] = ()) -> list[str]:
    """Refuse (ResumeConfigError) a resume whose config changes the run; return the allowed differences for the log.

    Allowed: fields under RUN_INVARIANT_KEYS (and `allow`, extra dotted prefixes). Everything else - model.path,
    algo.*, setting.*, data.*, reward.*, seed, rollout sampling and batch sizes, trainer.* - would make the resumed run
    differ from the uninterrupted one.
    """
    if not isinstance(saved, dict):
        raise ResumeConfigError(f"the checkpoint holds no resolved config (driver_state['config'] is {type(saved)})")
    invariant = (*RUN_INVARIANT_KEYS, *allow)
    refused, allowed = [], []
    for line in config_differences(saved, current):
        (allowed if _matches(line.split(":", 1)[0], invariant) else refused).append(line)
    if refused:
        raise ResumeConfigError(
            "cannot resume: the config differs from the checkpoint's in fields that change the run:\n  "
            + "\n  ".join(refused)
            + "\nRestore these values, or start a fresh run (resume=false)."
        )
    return allowed
