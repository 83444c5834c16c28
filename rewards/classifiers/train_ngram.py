"""Fit the `ngram` AF classifier on the TUNE split of the scratchpad set and write its JSON model file.

    python -m rewards.classifiers.train_ngram            # rewrites rewards/data/af_ngram_model.json
    python -m rewards.classifiers.train_ngram --check    # re-trains and compares with the shipped file

Everything is chosen inside the tune split: the feature set and the L2 strength by repeated stratified k-fold
cross-validation (mean fold AUROC), the decision threshold by the largest Youden J (recall - false-positive rate) on
the out-of-fold probabilities of the chosen setting. The final model is then fitted on all tune rows. `train_model`
refuses any row whose split is not "tune", so the test split cannot leak in. Deterministic: fixed seeds, sorted
vocabulary, weights rounded to 6 decimals.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from rewards.classifiers.labeled_data import SCRATCHPAD_SET, load_labeled, select_split
from rewards.classifiers.logreg import fit_logreg, sigmoid
from rewards.classifiers.metrics import auroc, confusion
from rewards.classifiers.ngram import MODEL_FORMAT, MODEL_PATH, load_model
from rewards.classifiers.ngram_features import FeatureSpec, build_vocabulary, feature_matrix, ngrams

# simplest first: the selection rule prefers earlier feature sets and larger l2 among near-ties
FEATURE_GRID = (FeatureSpec(1, None, 2), FeatureSpec(2, None, 2), FeatureSpec(2, None, 2, negation=True),
                FeatureSpec(3, None, 2), FeatureSpec(3, None, 2, negation=True), FeatureSpec(1, (3, 5), 2),
                FeatureSpec(2, (3, 5), 2), FeatureSpec(2, (3, 5), 2, negation=True))
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FOLDS = 5
REPEATS = 3
CV_SEED = 0
DECIMALS = 6


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each fold; every class is shuffled (seeded) and dealt round-robin, so folds stay balanced."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out: list[list[int]] = [[] for _ in range(folds)]
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == cls))
        for i, row in enumerate(members):
            out[i % folds].append(int(row))
    return [np.array(sorted(fold)) for fold in out]


def choose_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The cut with the largest recall - false-positive rate (midpoints between distinct scores); ties go to the
    cut nearest 0.5."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    distinct = np.unique(scores)
    cuts = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]])
    n_pos, n_neg = max(int(labels.sum()), 1), max(int((labels == 0).sum()), 1)
    best_key, best_cut = None, 0.5
    for cut in cuts:
        predicted = scores >= cut
        j = (predicted & (labels == 1)).sum() / n_pos - (predicted & (labels == 0)).sum() / n_neg
        key = (round(float(j), 9), -abs(cut - 0.5))
        if best_key is None or key > best_key:
            best_key, best_cut = key, float(cut)
    return round(best_cut, DECIMALS)


def cross_validate(texts: Sequence[str], labels: Sequence[int], folds: int = FOLDS, repeats: int = REPEATS,
                   seed: int = CV_SEED) -> tuple[list[dict], dict[tuple[int, float], np.ndarray]]:
    """Per (feature set, l2): mean fold AUROC over `repeats` x `folds`; and per (feature index, l2) the out-of-fold
    probabilities averaged over the repeats. The vocabulary of each fold comes from its training part only."""
    y = np.asarray(labels, dtype=float)
    fold_aurocs: dict[tuple[int, float], list[float]] = {}
    oof: dict[tuple[int, float], np.ndarray] = {}
    bar = tqdm(total=len(FEATURE_GRID) * repeats * folds, desc="cross-validation", unit="fold")
    for spec_i, spec in enumerate(FEATURE_GRID):
        sets = [ngrams(text, spec) for text in texts]
        for repeat in range(repeats):
            for held in stratified_folds(labels, folds, seed + repeat):
                train = np.setdiff1d(np.arange(len(texts)), held)
                vocabulary = build_vocabulary([sets[i] for i in train], spec.min_df)
                X_train = feature_matrix([sets[i] for i in train], vocabulary, spec)
                X_held = feature_matrix([sets[i] for i in held], vocabulary, spec)
                gram = X_train @ X_train.T
                for l2 in L2_GRID:
                    w, b = fit_logreg(X_train, y[train], l2, gram=gram)
                    probs = sigmoid(X_held @ w + b)
                    fold_aurocs.setdefault((spec_i, l2), []).append(auroc(probs.tolist(), y[held].astype(int).tolist()))
                    oof.setdefault((spec_i, l2), np.zeros(len(texts)))[held] += probs / repeats
                bar.update(1)
    bar.close()
    table = [{"features": FEATURE_GRID[s].to_json(), "feature_index": s, "l2": l2,
              "cv_auroc": round(float(np.mean(values)), 4),
              "cv_auroc_se": round(float(np.std(values, ddof=1) / np.sqrt(len(values))), 4)}
             for (s, l2), values in fold_aurocs.items()]
    return table, oof


def select_setting(table: Sequence[dict]) -> dict:
    """The one-standard-error rule: among settings whose mean CV AUROC is within one standard error of the best,
    the simplest feature set (earliest in FEATURE_GRID), then the strongest regularisation. Differences smaller
    than the fold-to-fold noise say nothing, and the simpler model is the safer bet on unseen phrasing."""
    top = max(table, key=lambda r: r["cv_auroc"])
    eligible = [r for r in table if r["cv_auroc"] >= top["cv_auroc"] - top["cv_auroc_se"]]
    return min(eligible, key=lambda r: (r["feature_index"], -r["l2"]))


def texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n\x00".join(texts).encode("utf-8")).hexdigest()


def train_model(rows: Sequence[dict]) -> dict:
    """The model file's content, fitted on `rows`, which must all be tune rows (see the module docstring)."""
    for i, row in enumerate(rows):
        if row.get("split") != "tune":
            raise ValueError(f"train_model: row {i} has split {row.get('split')!r}; only 'tune' rows may be trained on")
    texts = [row["scratchpad"] for row in rows]
    labels = [int(row["label"]) for row in rows]
    table, oof = cross_validate(texts, labels)
    best = select_setting(table)
    spec, l2 = FEATURE_GRID[best["feature_index"]], best["l2"]
    oof_probs = oof[(best["feature_index"], l2)]
    threshold = choose_threshold(oof_probs, labels)

    sets = [ngrams(text, spec) for text in texts]
    vocabulary = build_vocabulary(sets, spec.min_df)
    w, b = fit_logreg(feature_matrix(sets, vocabulary, spec), np.asarray(labels, dtype=float), l2)
    oof_confusion = confusion((oof_probs >= threshold).tolist(), labels)
    return {
        "format": MODEL_FORMAT,
        "features": spec.to_json(),
        "l2": l2,
        "intercept": round(b, DECIMALS),
        "threshold": threshold,
        "training": {
            "split": "tune", "rows": len(rows), "positives": sum(labels), "texts_sha256": texts_digest(texts),
            "selection": f"{REPEATS} x {FOLDS}-fold stratified CV (seeds {CV_SEED}..{CV_SEED + REPEATS - 1}) "
                         "of mean fold AUROC, one-standard-error rule (simplest features, then largest l2)",
            "threshold_rule": "largest recall - false-positive rate on the out-of-fold probabilities",
            "cv_grid": [{k: v for k, v in r.items() if k != "feature_index"} for r in table],
            "out_of_fold": {"auroc": round(auroc(oof_probs.tolist(), labels), 4),
                            "precision": round(oof_confusion.precision, 4), "recall": round(oof_confusion.recall, 4)},
        },
        "weights": {name: round(float(value), DECIMALS) for name, value in zip(vocabulary, w)},
    }


def model_json(model: dict) -> str:
    return json.dumps(model, indent=1, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SCRATCHPAD_SET, help="labelled JSONL with a 'split' column")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="model JSON to write")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)

    rows = [row for row in select_split(load_labeled(args.data), "tune") if row.get("split") == "tune"]
    if not rows:
        raise SystemExit(f"{args.data}: no rows with split 'tune'")
    model = train_model(rows)
    grid = model["training"]["cv_grid"]
    best = max(grid, key=lambda r: r["cv_auroc"])
    chosen = next(r for r in grid if r["features"] == model["features"] and r["l2"] == model["l2"])
    print(f"trained on {len(rows)} tune rows of {args.data} ({model['training']['positives']} AF)")
    print(f"best CV AUROC {best['cv_auroc']:.4f} +- {best['cv_auroc_se']:.4f} ({best['features']}, l2 {best['l2']})")
    print(f"selected features {model['features']}, l2 {model['l2']} (CV AUROC {chosen['cv_auroc']:.4f}); "
          f"threshold {model['threshold']}; {len(model['weights'])} n-gram weights")
    print(f"out-of-fold on tune: {model['training']['out_of_fold']}")
    text = model_json(model)
    if args.check:
        if not args.out.exists():
            print(f"{args.out}: missing")
            return 1
        same = models_match(model, json.loads(args.out.read_text(encoding="utf-8")))
        print(f"{args.out}: {'matches the re-trained model' if same else 'DIFFERS from the re-trained model'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    load_model(args.out)  # the written file must load
    print(f"wrote {args.out} ({len(text.encode()) / 1024:.0f} KiB)")
    return 0


def models_match(a: dict, b: dict, atol: float = 1e-5) -> bool:
    """Same features, vocabulary, l2 and training data; numbers equal within `atol` (BLAS rounding differs by
    machine, the 6th decimal may flip)."""
    if (a["features"], a["l2"], sorted(a["weights"])) != (b["features"], b["l2"], sorted(b["weights"])):
        return False
    if a["training"]["texts_sha256"] != b["training"]["texts_sha256"]:
        return False
    close = lambda x, y: abs(x - y) <= atol  # noqa: E731
    return (close(a["intercept"], b["intercept"]) and close(a["threshold"], b["threshold"])
            and all(close(a["weights"][k], b["weights"][k]) for k in a["weights"]))


if __name__ == "__main__":
    sys.exit(main())
