"""Tests of SFT (the planted organism, synthetic documents)."""
