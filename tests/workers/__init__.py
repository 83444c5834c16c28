"""Tests of the Ray actors: DeepSpeed ranks, placement, served judges."""
