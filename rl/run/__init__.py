"""Run plumbing: set-up, run folder, checkpoints, resume, preemption, faults, input checks, logs."""
