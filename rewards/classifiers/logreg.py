"""L2-regularised logistic regression in pure numpy (pure functions; deterministic).

Objective (intercept b not penalised):  J(w, b) = mean_i log(1 + exp(-s_i (x_i.w + b))) + l2/2 * |w|^2,  s_i = +-1.
With far more n-gram features than scratchpads, the optimum has w = X^T a (the gradient always lies in the row
space), so Newton's method runs on the n+1 unknowns (a, b) with the Gram matrix K = X X^T instead of a d x d Hessian.
"""
from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form


def objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, l2: float) -> float:
    f = X @ w + b
    return float(np.mean(np.logaddexp(0.0, f) - y * f) + 0.5 * l2 * w @ w)


def gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, l2: float) -> tuple[np.ndarray, float]:
    r = (sigmoid(X @ w + b) - y) / len(y)
    return X.T @ r + l2 * w, float(r.sum())


def fit_logreg(X: np.ndarray, y: np.ndarray, l2: float, gram: np.ndarray | None = None, tol: float = 1e-10,
               max_iter: int = 100) -> tuple[np.ndarray, float]:
    """(w, b) minimising J for features X (n x d) and labels y in {0, 1}. Damped Newton steps on (a, b).
    `gram`: X @ X.T when the caller already has it (cross-validation fits several l2 values on one fold)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"fit_logreg: X must be (n, d) with n = len(y), got {X.shape} and {len(y)} labels")
    if l2 <= 0:
        raise ValueError(f"fit_logreg: l2 must be > 0, got {l2}")
    n = len(y)
    K = X @ X.T if gram is None else gram
    a, b = np.zeros(n), 0.0

    def loss(a_: np.ndarray, b_: float) -> float:
        f = K @ a_ + b_
        return float(np.mean(np.logaddexp(0.0, f) - y * f) + 0.5 * l2 * a_ @ K @ a_)

    current = loss(a, b)
    for _ in range(max_iter):
        p = sigmoid(K @ a + b)
        r = (p - y) / n
        g_a, g_b = r + l2 * a, float(r.sum())  # g_a: the primal gradient in coefficient space (w-gradient = X^T g_a)
        if np.sqrt(g_a @ K @ g_a + g_b ** 2) < tol:
            break
        weights = p * (1.0 - p) / n
        system = np.empty((n + 1, n + 1))
        system[:n, :n] = weights[:, None] * K + l2 * np.eye(n)
        system[:n, n] = weights
        system[n, :n] = weights @ K
        system[n, n] = weights.sum()
        step = np.linalg.solve(system, -np.concatenate([g_a, [g_b]]))
        t = 1.0
        while t > 1e-8:  # backtracking keeps every step a descent step
            candidate = loss(a + t * step[:n], b + t * step[n])
            if candidate <= current:
                break
            t *= 0.5
        a, b, current = a + t * step[:n], b + t * step[n], candidate
    return X.T @ a, float(b)
