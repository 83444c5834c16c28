"""Post-hoc report of a run: the paper's figures, a before/after table and a transcript browser (see build.py)."""
