"""Tests of the algorithm math (pure functions, no Ray)."""
