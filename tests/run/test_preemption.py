"""rl/run/preemption.py in a real process: a signal sets the stop flag (no exit), Preempted exits with status 75, and
the children started after `install` survive the USR1/USR2 that Slurm sends to every process of a job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rl.run.preemption import PREEMPTED_EXIT_CODE

REPO = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    sys.path.insert(0, {repo!r})
    from rl.run import preemption
    preemption.install()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init does to the driver
    preemption.reassert()
    print(child.pid, flush=True)
    while not preemption.requested():
        time.sleep(0.05)
    time.sleep(0.3)  # a second signal meanwhile is only logged
    print(preemption.reason(), "| child alive:", child.poll() is None, flush=True)
    child.kill()
    raise preemption.Preempted("stopped after step 4")
    """
)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2])
def test_a_signal_requests_a_stop_children_survive_usr_signals_and_the_exit_status_is_75(tmp_path, sent):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO)))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        child = int(driver.stdout.readline())
        os.kill(child, signal.SIGUSR1)  # Slurm's signal reaches every process of the job step
        os.kill(child, signal.SIGUSR2)
        time.sleep(0.2)
        os.kill(driver.pid, sent)
        time.sleep(0.1)
        os.kill(driver.pid, signal.SIGTERM)
        out, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == PREEMPTED_EXIT_CODE, err
    assert f"{sent.name} received at" in out and "| child alive: True" in out, out + err
    assert "already stopping after the current step" in err
