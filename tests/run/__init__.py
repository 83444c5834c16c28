"""Tests of the run: the loop's pieces, config, checkpoints, resume, preemption, faults, whole training runs."""
