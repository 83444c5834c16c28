"""Stop at the next safe point when the job is told to go: preemption, a scheduler's time limit, `kill <pid>`.

Signals: SIGTERM (what `kill`, Kubernetes and a Slurm preemption send), SIGUSR1 and SIGUSR2 (what Slurm sends
`signal_delay_s` before the time limit: `--signal=USR2@N` from hydra-submitit-launcher, whose submitit picks USR2
unless SUBMITIT_PREEMPT_SIGNAL says otherwise; USR1 in many hand-written sbatch scripts). Each one only sets a flag;
the loop checks it after every RL step, saves a checkpoint, and the process exits with PREEMPTED_EXIT_CODE. The next
launch with the same command line continues from that checkpoint (`resume=auto`, the default).

Why USR1/USR2 are blocked, not handled, in the driver: Slurm signals every process of the job step, Ray's daemons and
actors included, and a process that does not handle USR1/USR2 dies of it. A blocked signal mask is inherited by every
child (the Ray daemons started by `ray.init`, the actors they start, the vLLM processes those start), so the children
never act on it, while a thread of the driver takes it with `sigwait`. SIGTERM cannot be treated that way (Ray stops
its own daemons with it), so a SIGTERM sent to every process of the job (a Slurm preemption) stops the actors too: the
run then exits with the same status from its last checkpoint (periodic, `ckpt.every_minutes`).

Under hydra-submitit-launcher the handler submitit installed for its signal (which requeues the job) is called after
the checkpoint is written; its own exit replaces ours.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

log = logging.getLogger("afrl")

# EX_TEMPFAIL (sysexits.h): "a temporary failure; the user is invited to retry". A job script can requeue on it.
PREEMPTED_EXIT_CODE = 75
WAITED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # blocked in every process of the run; taken by a driver thread
# Handled too: the mask is per thread, and a thread started before `install` would otherwise die of a USR signal.
HANDLED_SIGNALS = (signal.SIGTERM, *WAITED_SIGNALS)


class Preempted(SystemExit):
    """Raised by the loop once the checkpoint of a requested stop is written; exits with PREEMPTED_EXIT_CODE."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _State:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self.received_at: float | None = None
        self.previous: dict[int, object] = {}  # handlers installed before ours (submitit's), called after the checkpoint
        self.installed = False


_state = _State()


def _request(signum: int) -> None:
    name = signal.Signals(signum).name
    if _state.requested.is_set():
        log.warning("%s received: already stopping after the current step (first: %s)", name, _state.signal_name)
        return
    _state.signal_name, _state.received_at = name, time.time()
    _state.requested.set()
    log.warning("%s received: the run stops after the current RL step, with a checkpoint (exit status %d)", name,
                PREEMPTED_EXIT_CODE)


def _on_signal(signum, frame) -> None:  # noqa: ARG001 - the signal module's signature
    _request(signum)


def _wait_for_user_signals() -> None:
    while True:
        _request(signal.sigwait(set(WAITED_SIGNALS)))


def install() -> None:
    """In the driver's main thread, before Ray or any other child process starts (children inherit the mask)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("rl.run.preemption.install() must run in the main thread (signal handlers live there)")
    if not _state.installed:
        for signum in HANDLED_SIGNALS:
            _state.previous[signum] = signal.getsignal(signum)
        signal.pthread_sigmask(signal.SIG_BLOCK, set(WAITED_SIGNALS))
        threading.Thread(target=_wait_for_user_signals, name="afrl-preemption", daemon=True).start()
        _state.installed = True
    reassert()


def reassert() -> None:
    """Put our handlers back: `ray.init` replaces SIGTERM's with one that exits at once, without a checkpoint. A no-op
    in a process that never called `install` (launch/eval.py): there nothing would check the flag."""
    if not _state.installed:
        return
    for signum in HANDLED_SIGNALS:
        if signal.getsignal(signum) is not _on_signal:
            signal.signal(signum, _on_signal)


def requested() -> bool:
    return _state.requested.is_set()


def reason() -> str:
    if not requested():
        return "no stop requested"
    return f"{_state.signal_name} received at {time.strftime('%H:%M:%S', time.localtime(_state.received_at))}"


def chain_previous_handler() -> None:
    """Call the handler that was installed for the received signal before ours, if it is a Python function (submitit's
    requeue-and-exit under hydra-submitit-launcher); Python's defaults and Ray's exit handler are not called."""
    if not requested():
        return
    signum = signal.Signals[_state.signal_name].value
    previous = _state.previous.get(signum)
    if callable(previous) and previous is not _on_signal and getattr(previous, "__module__", "").startswith("submitit"):
        log.info("calling the %s handler installed before afrl's (%s)", _state.signal_name, previous)
        previous(signum, None)
