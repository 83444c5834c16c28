"""Data paths given relative to the repository work from any directory (a launch script run from elsewhere)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_repo_path(path: str) -> str:
    """An existing file as an absolute path; a relative one missing from the cwd is looked up in the repo root.

    Absolute paths make the configs saved beside a trained model the same whatever directory the command ran from.
    """
    for candidate in (Path(path).expanduser(), REPO_ROOT / path):
        if candidate.exists():
            return str(candidate.resolve())
    return path  # a hub name or a missing file, reported by the loader
