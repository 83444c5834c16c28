"""afrl vs TRL GRPOTrainer benchmark (launch/bench.py): workloads, compute floor, the two runners, the table."""
