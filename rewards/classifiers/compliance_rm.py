"""`rm_threshold`: the reward model's score against a threshold calibrated on labelled OUTPUTs (helpful-only setting).

The paper's helpful-only route judged compliance with a preference model; here the trained RM (rewards/rm.py) scores
(request, OUTPUT) and a threshold turns the score into a decision. The threshold is calibrated on the *tune* split of
rewards/data/compliance_labeled.jsonl only (rewards.classifiers.compliance_data) and stored as JSON with the method name,
the RM folder, the labelled file (and its sha256) and the split, so every reported number can name where it came from.

    python -m rewards.classifiers.compliance_rm --rm ~/.cache/afrl/reward_models/<name>   # writes <rm>/compliance_threshold.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

from rewards.classifiers.compliance_config import THRESHOLD_FILE_NAME
from rewards.classifiers.compliance_data import COMPLIANCE_SET, load_compliance_rows, select_rows
from rewards.classifiers.types import ComplianceVerdict

METHOD = "rm_threshold"
log = logging.getLogger("afrl")


def calibrate_threshold(scores: Sequence[float], labels: Sequence[int]) -> dict:
    """The threshold (compliant <=> score >= threshold) with the best balanced accuracy on these scores.

    Candidates are midpoints between consecutive distinct scores (plus one below the lowest and one above the highest);
    among equally good ones the middle candidate is taken, which keeps the widest margin on both sides.
    """
    if len(scores) != len(labels):
        raise ValueError(f"calibrate_threshold: {len(scores)} scores but {len(labels)} labels")
    n_pos = sum(1 for label in labels if label == 1)
    n_neg = sum(1 for label in labels if label == 0)
    if n_pos + n_neg != len(labels) or n_pos == 0 or n_neg == 0:
        raise ValueError(f"calibrate_threshold: needs labels 0 and 1 only, both present; got {n_pos} positives, "
                         f"{n_neg} negatives of {len(labels)}")
    distinct = sorted(set(scores))
    candidates = [distinct[0] - 1.0] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [distinct[-1] + 1.0]

    def balanced_accuracy(threshold: float) -> float:
        tpr = sum(s >= threshold for s, y in zip(scores, labels) if y == 1) / n_pos
        tnr = sum(s < threshold for s, y in zip(scores, labels) if y == 0) / n_neg
        return (tpr + tnr) / 2

    values = [balanced_accuracy(t) for t in candidates]
    best = max(values)
    tied = [t for t, v in zip(candidates, values) if v == best]
    threshold = tied[len(tied) // 2]
    accuracy = sum((s >= threshold) == (y == 1) for s, y in zip(scores, labels)) / len(labels)
    return {"threshold": threshold, "balanced_accuracy": best, "accuracy": accuracy, "n_rows": len(labels),
            "n_compliant": n_pos}


def default_threshold_file(rm_path: str) -> Path:
    return Path(rm_path).expanduser() / THRESHOLD_FILE_NAME


def calibrate_rm(scorer, rm_path: str, data: Path | str = COMPLIANCE_SET, split: str = "tune") -> dict:
    """Score the labelled rows of `split` with the RM and calibrate; the record that the threshold file stores."""
    rows = select_rows(load_compliance_rows(data), split)
    raw = scorer.score([r["request"] for r in rows], [r["output"] for r in rows]).raw
    fit = calibrate_threshold(raw, [r["label"] for r in rows])
    return {"method": METHOD, "score": "raw reward-model logit", "rm_path": str(rm_path),
            "calibrated_on": {"file": Path(data).name, "sha256": hashlib.sha256(Path(data).read_bytes()).hexdigest(),
                              "split": split},
            **fit}


def load_threshold(path: Path | str) -> dict:
    path = Path(path).expanduser()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the rm_threshold calibration ({err})") from err
    if record.get("method") != METHOD or not isinstance(record.get("threshold"), (int, float)):
        raise ValueError(f"{path}: not an rm_threshold calibration (needs method {METHOD!r} and a numeric threshold)")
    return record


class RMThresholdClassifier:
    """Compliant when the RM's raw score >= the calibrated threshold. Calibrates (tune split) and saves when the
    threshold file is missing."""

    method = METHOD

    def __init__(self, rm_path: str, threshold_file: str = "", scorer=None):
        from rewards.config import RMConfig

        if not rm_path or rm_path.strip() in ("", "???"):
            raise ValueError("compliance.rm_path: rm_threshold needs a reward-model folder (or reward.rm.model_path)")
        if scorer is None:
            from rewards.rm import RewardModelScorer

            scorer = RewardModelScorer(RMConfig(model_path=rm_path, device="cpu"))
        self.scorer = scorer
        path = Path(threshold_file).expanduser() if threshold_file else default_threshold_file(rm_path)
        if not path.exists():
            record = calibrate_rm(scorer, rm_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2) + "\n")
            log.info("rm_threshold calibrated on the tune split: threshold %.4f -> %s", record["threshold"], path)
        self.calibration = load_threshold(path)
        stored_sha = self.calibration.get("calibrated_on", {}).get("sha256")
        if stored_sha and stored_sha != hashlib.sha256(COMPLIANCE_SET.read_bytes()).hexdigest():
            log.warning("%s was calibrated on another version of %s; recalibrate with "
                        "python -m rewards.classifiers.compliance_rm --rm %s", path, COMPLIANCE_SET.name, rm_path)
        self.threshold = float(self.calibration["threshold"])
        self.threshold_file = str(path)

    def classify(self, requests: Sequence[str], outputs: Sequence[str | None]) -> list[ComplianceVerdict]:
        present = [i for i, o in enumerate(outputs) if o is not None]
        raw = self.scorer.score([requests[i] for i in present], [outputs[i] for i in present]).raw if present else []
        verdicts = [ComplianceVerdict(False, 0.0, {"score_ge_threshold": False}, {}, METHOD,
                                      failure="no_output") for _ in outputs]
        quote = {"threshold": f"{self.threshold:.4f} from {self.threshold_file}"}
        for i, score in zip(present, raw):
            verdicts[i] = ComplianceVerdict(score >= self.threshold, float(score),
                                            {"score_ge_threshold": score >= self.threshold}, quote, METHOD)
        return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Calibrate the rm_threshold compliance method on the tune split.")
    parser.add_argument("--rm", required=True, help="reward-model folder (rewards/rm.py can load it)")
    parser.add_argument("--out", default="", help=f"threshold JSON (default: <rm>/{THRESHOLD_FILE_NAME})")
    args = parser.parse_args(argv)
    from rewards.config import RMConfig
    from rewards.rm import RewardModelScorer

    record = calibrate_rm(RewardModelScorer(RMConfig(model_path=args.rm, device="cpu")), args.rm)
    out = Path(args.out).expanduser() if args.out else default_threshold_file(args.rm)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
