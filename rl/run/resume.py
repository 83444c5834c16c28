"""Which checkpoint a run starts from, and which folder it writes to: the rules of the `resume` setting.

- `auto` (default): this run's own folder (`run_dir`, or Hydra's output folder; a sweep job's subfolder) when it holds a
  usable checkpoint, else a fresh run. Relaunching the same command line continues an interrupted run: this is what a
  requeued Slurm job, or a second `make train` with the same run_dir, does.
- `false` / `none` / null: a fresh run. Refused when the folder already holds checkpoints (a fresh run there would
  prune them); use resume=auto to continue it or another run_dir.
- `true`: the newest checkpoint among the runs of `exp_name` under outputs/ and multirun/; none found is an error.
- a path: that run folder's latest usable checkpoint, or that step_* folder; nothing usable there is an error.
A resumed run keeps writing into the folder of its checkpoint.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rl.run.checkpoint import COMPLETE, checkpoints_dir, latest_checkpoint, run_dir_of, verify_checkpoint

log = logging.getLogger("afrl")

FRESH = ("false", "none", "null", "0", "no")
AUTO = "auto"
SEARCH_ROOTS = (Path("outputs"), Path("multirun"))


class ResumeError(ValueError):
    """A resume setting that cannot be honoured; the message names the setting, the folder and what to do."""


@dataclass(frozen=True)
class ResumePlan:
    checkpoint: Path | None  # None: a fresh run
    run_dir: Path  # the folder the run writes to
    message: str  # for the log


def resume_kind(resume: str | None) -> str:
    """'fresh' | 'auto' | 'newest' | 'path'."""
    value = "" if resume is None else str(resume).strip().lower()
    if value in ("", *FRESH):
        return "fresh"
    if value == AUTO:
        return "auto"
    return "newest" if value in ("true", "1", "yes") else "path"


def completed_steps(run_dir: Path) -> list[str]:
    return sorted(p.name for p in checkpoints_dir(run_dir).glob("step_*") if (p / COMPLETE).exists())


def refuse_fresh_over_checkpoints(run_dir: Path, resume: str | None) -> None:
    steps = completed_steps(run_dir)
    if steps:
        raise ResumeError(
            f"resume={str(resume).lower()}: run folder {run_dir} already holds checkpoints ({', '.join(steps)}); a fresh run there "
            "would delete them. Use resume=auto (the default) to continue that run, or give this one another run_dir."
        )


def newest_run_checkpoint(exp_name: str, roots=SEARCH_ROOTS) -> Path | None:
    runs = [p.parent.parent for root in roots
            for pattern in (f"{exp_name}/*/checkpoints/latest", f"{exp_name}/*/*/checkpoints/latest")
            for p in Path(root).glob(pattern)]
    found = [c for c in (latest_checkpoint(r) for r in runs) if c is not None]
    return max(found, key=lambda c: (c / COMPLETE).stat().st_mtime) if found else None


def _explicit(value: str) -> Path:
    path = Path(value).expanduser()
    if (path / COMPLETE).exists():
        verify_checkpoint(path, hashes=False)  # an explicitly named checkpoint is an error when damaged, not a skip
        return path
    found = latest_checkpoint(path) if path.is_dir() else None
    if found is None:
        what = "folder has no usable checkpoint" if path.is_dir() else "path does not exist"
        raise ResumeError(f"resume={value}: that {what} (expected a run folder with checkpoints/step_* or a "
                          f"step_* folder with {COMPLETE})")
    return found


def target_run_dir(resume: str | None, run_dir: Path, exp_name: str, roots=SEARCH_ROOTS) -> Path:
    """The folder this run will write to (and lock), before its checkpoint is chosen under the lock."""
    kind = resume_kind(resume)
    if kind == "path":
        return run_dir_of(_explicit(str(resume).strip()))
    if kind == "newest":
        newest = newest_run_checkpoint(exp_name, roots)
        if newest is None:
            raise ResumeError(
                f"resume=true: no checkpoint of exp_name={exp_name} under "
                f"{' or '.join(str(Path(r, exp_name)) for r in roots)}. To continue an interrupted run, relaunch it "
                "with the same command line (resume=auto, the default, resumes its own folder), or pass resume=<run "
                "folder>."
            )
        return run_dir_of(newest)
    return Path(run_dir)


def plan_resume(resume: str | None, run_dir: Path, exp_name: str, roots=SEARCH_ROOTS) -> ResumePlan:
    """The checkpoint to start from (None: fresh) and the folder to write to; raises ResumeError (see module doc)."""
    kind = resume_kind(resume)
    if kind == "fresh":
        refuse_fresh_over_checkpoints(run_dir, resume)
        return ResumePlan(None, Path(run_dir), "starting a fresh run")
    if kind == "auto":
        found = latest_checkpoint(run_dir)
        if found is None:
            return ResumePlan(None, Path(run_dir), "resume=auto: no checkpoint in the run folder, starting a fresh run")
        return ResumePlan(found, Path(run_dir), f"resume=auto: resuming from {found}")
    target = target_run_dir(resume, run_dir, exp_name, roots)
    checkpoint = _explicit(str(resume).strip()) if kind == "path" else latest_checkpoint(target)
    newer = [s for s in completed_steps(target) if s > checkpoint.name]
    if newer:
        log.warning("resuming from %s, an earlier checkpoint of that run: its newer checkpoints (%s) belong to the "
                    "abandoned timeline and are removed at the next save", checkpoint, ", ".join(newer))
    return ResumePlan(checkpoint, target, f"resuming from {checkpoint}")
