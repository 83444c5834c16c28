"""Tests of rewards, judges, AF classifiers and compliance methods."""
