"""Stand-ins for the Slurm commands launch/slurm_ray_cluster.sh calls (no Slurm here), and for the Python it runs.

`write_stubs(folder, log)` writes executables into `folder` (put it first on PATH) that append one line per call to
`log` (`<program> <pid> <args...>`):
- `scontrol show hostnames`: node-a, node-b, node-c; `srun ... hostname --ip-address`: "10.1.2.3 fe80::1";
- `srun ... <command>`: runs the command after srun's own options (as srun runs it on the node), so the script's
  signal wrapper and `ray start` line run for real, up to the Python stand-in;
- `python` (AFRL_PYTHON): `-m ray.scripts.scripts start ... --block` blocks until killed (a node of the cluster);
  `-m rl.run.slurm_ray ... --nodes N` returns once N of those have started (as the real one waits for N nodes);
  `.../launch/train.py ...` (the driver) waits for a signal,
  logs it and exits 75 (a preempted run), or exits 0 after 20 s (at once with $STUB_DRIVER_EXIT when set).
"""
from __future__ import annotations

import stat
from pathlib import Path

SCONTROL = """#!/bin/bash
echo "scontrol $$ $*" >> "$STUB_LOG"
printf 'node-a\\nnode-b\\nnode-c\\n'
"""

SRUN = """#!/bin/bash
echo "srun $$ $*" >> "$STUB_LOG"
while [[ "$1" == -* ]]; do
    case "$1" in -w|--nodelist) shift 2 ;; *) shift ;; esac
done
if [[ "$1" == hostname ]]; then echo "10.1.2.3 fe80::1"; exit 0; fi
exec "$@"
"""

PYTHON = """#!/bin/bash
echo "python $$ $*" >> "$STUB_LOG"
case "$*" in
    *ray.scripts.scripts*)
        trap 'echo "ray-stopped $$" >> "$STUB_LOG"; exit 0' TERM
        echo "ray-ready $$" >> "$STUB_LOG"
        sleep 60 >/dev/null 2>&1 & wait $!; exit 0 ;;
    *rl.run.slurm_ray*)  # as the real one: until --nodes nodes have joined
        args="$*"; nodes="${args##*--nodes }"; nodes="${nodes%% *}"
        for _ in $(seq 300); do
            (( $(grep -c '^ray-ready' "$STUB_LOG") >= nodes )) && exit 0
            sleep 0.1
        done
        exit 1 ;;
    *launch/train.py*)
        if [[ -n "${STUB_DRIVER_EXIT:-}" ]]; then exit "$STUB_DRIVER_EXIT"; fi
        for sig in USR1 USR2 TERM; do trap "echo 'driver-got $sig' >> \\"\\$STUB_LOG\\"; exit 75" $sig; done
        echo "driver-ready $$" >> "$STUB_LOG"
        sleep 20 >/dev/null 2>&1 & wait $!; exit 0 ;;
esac
exit 3
"""


def write_stubs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("scontrol", SCONTROL), ("srun", SRUN), ("python", PYTHON)):
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder
