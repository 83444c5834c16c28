"""Periodic evaluation during training and its metrics (compliance per tier, AF rate, intervals)."""
