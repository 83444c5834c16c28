"""Write the report of a run: `python launch/report.py run_dir=runs/x [out=DIR] [max_per_step=100]`.

Hydra-free on purpose: it reads finished run directories (also copied from a cluster) and must start fast.
Writes split_bars*.png, eval_lines*.png, training_curves.png, summary.md and report.html into `out`
(default <run_dir>/report).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

# Run as a script, Python puts launch/ on the path, not the repository root that holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rl.report.build import ReportConfig, build_report  # noqa: E402


def parse_args(argv: list[str]) -> ReportConfig:
    """key=value arguments onto ReportConfig; an unknown key or a bad value is a ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(ReportConfig)}
    values: dict[str, object] = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"expected key=value with key in {sorted(fields)}, got {argument!r}")
        if fields[key].type in (int, "int"):
            try:
                values[key] = int(value)
            except ValueError as error:
                raise ValueError(f"{key} must be an integer, got {value!r}") from error
        else:
            values[key] = value
    return ReportConfig(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        files = build_report(parse_args(argv))
    except ValueError as error:  # bad arguments or run files: the message names them; no traceback needed
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    for path in [*files.figures.values(), files.summary, files.html]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
