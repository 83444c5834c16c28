"""The algorithm math: pure functions on tensors (advantages, losses, KL, importance weights, log-probs, batches)."""
