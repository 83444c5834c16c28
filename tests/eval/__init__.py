"""Tests of the periodic eval, its metrics and the report."""
