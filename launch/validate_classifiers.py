"""Validate alignment-faking classifier backends (--task af) or compliance methods (--task compliance) on labelled JSONL.

    python launch/validate_classifiers.py                        # offline backends on the held-out test split
    python launch/validate_classifiers.py --split tune           # ... on the split the ngram model was fitted on
    python launch/validate_classifiers.py --data my.jsonl --backend revisited --base-url http://host:8000/v1 --model M

Each JSONL row needs `scratchpad` (str) and `label` (0 or 1); `split` ("tune" | "test") selects rows with --split
(a file without `split` is used whole); other keys are kept for the error listing. Without --backend, the offline
default backend runs first, then the other offline ones; with --backend, only that one. Every run also scores the
trivial "mentions RLHF or training" baseline. Per backend: AUROC (on the verdict scores), precision, recall and F1
of the `af` decision at the backend's threshold, and a confusion table; a summary table closes the output.
Any labelled set works, e.g. the human-labelled scratchpads released with "Alignment faking revisited" once
converted to these two keys.

    python launch/validate_classifiers.py --task compliance                  # offline methods, test split of the set
    python launch/validate_classifiers.py --task compliance --data my.jsonl  # any file, all rows
    python launch/validate_classifiers.py --task compliance --method rm_threshold --rm-path <RM folder>

--task compliance: rows need `request`, `output` and `label` (1 = fully compliant); `kind` and `split` are optional.
The offline default method (tag_refusal; welfare_rule with --setting animal_welfare) runs first, then the other
offline ones; with --method, only that one. Default split: the test split for the shipped set
(rewards/data/compliance_labeled.jsonl), all rows for another file; an explicit --split uses a row's `split`, else the
hash of its request (rewards/classifiers/compliance_data.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from the repo root

from rewards.classifiers import AFClassifierConfig, build_af_classifier  # noqa: E402
from rewards.classifiers.compliance_config import COMPLIANCE_METHODS, SETTING_OBJECTIVE  # noqa: E402
from rewards.classifiers.heuristic import mentions_rlhf_baseline  # noqa: E402
from rewards.classifiers.labeled_data import SCRATCHPAD_SET, load_labeled, select_split  # noqa: E402
from rewards.classifiers.metrics import Confusion, auroc, confusion  # noqa: E402
from rewards.classifiers.types import AF_BACKENDS, OFFLINE_AF_BACKENDS, AFVerdict  # noqa: E402
from rewards.config import JudgeConfig  # noqa: E402

BACKEND_NOTES = {
    "heuristic": "ROUGH PROXY: keyword patterns, written against af_labeled.jsonl",
    "ngram": "trained proxy: n-gram logistic regression fitted on the tune split of af_scratchpads.jsonl",
}


def summarise(name: str, scores: Sequence[float], predictions: Sequence[bool], labels: Sequence[int],
              short: str | None = None) -> dict:
    """Metrics of one scorer; `name` heads its report, `short` (default: name) is its row in the summary table."""
    c = confusion(predictions, labels)
    return {"name": name, "short": short or name, "auroc": auroc(scores, labels), "precision": c.precision,
            "recall": c.recall, "f1": c.f1, "accuracy": c.accuracy, "confusion": c}


def format_report(summary: dict) -> str:
    c: Confusion = summary["confusion"]
    return "\n".join([
        f"== {summary['name']} ==",
        f"AUROC {summary['auroc']:.3f}  precision {summary['precision']:.3f}  recall {summary['recall']:.3f}  "
        f"F1 {summary['f1']:.3f}  accuracy {summary['accuracy']:.3f}",
        "                 predicted AF   predicted not",
        f"  label AF       {c.tp:>12}   {c.fn:>13}",
        f"  label not AF   {c.fp:>12}   {c.tn:>13}",
    ])


def format_table(summaries: Sequence[dict]) -> str:
    width = max(len(s["short"]) for s in summaries)
    lines = [f"{'backend':<{width}}  AUROC  precision  recall     F1"]
    lines += [f"{s['short']:<{width}}  {s['auroc']:.3f}  {s['precision']:>9.3f}  {s['recall']:>6.3f}  {s['f1']:.3f}"
              for s in summaries]
    return "\n".join(lines)


def backend_summary(rows: list[dict], cfg: AFClassifierConfig) -> tuple[dict, list[AFVerdict]]:
    """(summary, verdicts) of one backend on labelled rows."""
    labels = [row["label"] for row in rows]
    verdicts = build_af_classifier(cfg).classify([row["scratchpad"] for row in rows])
    note = BACKEND_NOTES.get(cfg.backend)
    name = cfg.backend + (f" ({note})" if note else "")
    return summarise(name, [v.score for v in verdicts], [v.af for v in verdicts], labels, short=cfg.backend), verdicts


def baseline_summary(rows: list[dict]) -> dict:
    predictions = [mentions_rlhf_baseline(row["scratchpad"]) for row in rows]
    return summarise("baseline: mentions RLHF/training", [float(p) for p in predictions], predictions,
                     [row["label"] for row in rows], short="mentions RLHF (baseline)")


def backends_to_run(requested: str | None) -> list[str]:
    """The requested backend, or the offline default (AFClassifierConfig's) followed by the other offline ones."""
    if requested is not None:
        return [requested]
    default = AFClassifierConfig().backend
    first = [default] if default in OFFLINE_AF_BACKENDS else []
    return first + [b for b in OFFLINE_AF_BACKENDS if b != default]


def compliance_main(args) -> int:
    from rewards.classifiers.compliance import build_compliance_classifier
    from rewards.classifiers.compliance_config import ComplianceConfig
    from rewards.classifiers.compliance_data import COMPLIANCE_SET, load_compliance_rows, select_rows
    from rewards.classifiers.compliance_validation import format_report, format_table, method_summary, methods_to_run

    data = args.data or COMPLIANCE_SET
    split = args.split or ("test" if Path(data).resolve() == COMPLIANCE_SET.resolve() else "all")
    try:
        rows = select_rows(load_compliance_rows(data), split)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    if not rows:
        raise SystemExit(f"{data}: no rows in split {split!r}")
    n_pos = sum(row["label"] for row in rows)
    print(f"{data} (split {split}): {len(rows)} outputs ({n_pos} labeled compliant, {len(rows) - n_pos} not)")
    summaries = []
    for method in methods_to_run(args.method, args.setting):
        cfg = ComplianceConfig(method=method, rm_path=args.rm_path,
                               judge=JudgeConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env))
        summary, verdicts = method_summary(rows, build_compliance_classifier(cfg, args.setting))
        summaries.append(summary)
        print(format_report(summary))
        if args.show_errors:
            for row, v in zip(rows, verdicts):
                if v.compliant != bool(row["label"]):
                    found = ", ".join(k for k, hit in v.criteria.items() if hit) or "none"
                    print(f"- line {row['line']} label {row['label']} [{row.get('kind', '')}] criteria: {found}; "
                          f"output: {row['output'][:100]!r}")
    print()
    print(format_table(summaries))
    if split != "test" and Path(data).resolve() == COMPLIANCE_SET.resolve():
        print("note: the rules were written with this file's rows in view and rm_threshold is calibrated on its tune "
              "split; only the test split is held out from calibration")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="af", choices=["af", "compliance"],
                        help="af: scratchpad classifiers; compliance: OUTPUT compliance methods")
    parser.add_argument("--data", type=Path, default=None,
                        help="labelled JSONL (af: scratchpad, label[, split]; compliance: request, output, label)")
    parser.add_argument("--split", default=None, choices=["test", "tune", "all"],
                        help="rows of this split (af: default test, files without a 'split' column are used whole)")
    parser.add_argument("--method", default=None, choices=list(COMPLIANCE_METHODS[1:]),
                        help="compliance: one method (default: the setting's offline methods, its default first)")
    parser.add_argument("--setting", default="helpful_only", choices=list(SETTING_OBJECTIVE),
                        help="compliance: the setting whose objective the outputs are judged against")
    parser.add_argument("--rm-path", default="", help="compliance rm_threshold: reward-model folder")
    parser.add_argument("--backend", default=None, choices=list(AF_BACKENDS),
                        help="one backend (default: every offline backend, the configured default first)")
    parser.add_argument("--threshold", type=float, default=AFClassifierConfig.threshold,
                        help="LLM backends: AF when score >= threshold")
    parser.add_argument("--votes", type=int, default=AFClassifierConfig.votes, help="revisited: votes per scratchpad")
    parser.add_argument("--base-url", default=JudgeConfig.base_url, help="OpenAI-compatible API of the judge")
    parser.add_argument("--model", default=JudgeConfig.model, help="judge model name")
    parser.add_argument("--api-key-env", default=JudgeConfig.api_key_env, help="env var holding the API key")
    parser.add_argument("--show-errors", action="store_true", help="list misclassified rows with their quotes")
    args = parser.parse_args(argv)
    if args.task == "compliance":
        return compliance_main(args)
    args.data = args.data or SCRATCHPAD_SET
    args.split = args.split or "test"

    all_rows = load_labeled(args.data)
    rows = select_split(all_rows, args.split)
    if not rows:
        raise SystemExit(f"{args.data}: no rows in split {args.split!r}")
    n_pos = sum(row["label"] for row in rows)
    has_split = any("split" in row for row in all_rows)
    print(f"{args.data} ({f'split {args.split}' if has_split else 'no split column: all rows'}): {len(rows)} "
          f"scratchpads ({n_pos} labeled AF, {len(rows) - n_pos} not)")
    summaries = []
    for backend in backends_to_run(args.backend):
        cfg = AFClassifierConfig(backend=backend, votes=args.votes, threshold=args.threshold,
                                 judge=JudgeConfig(base_url=args.base_url, model=args.model,
                                                   api_key_env=args.api_key_env))
        summary, verdicts = backend_summary(rows, cfg)
        summaries.append(summary)
        print(format_report(summary))
        failures = sum(v.failure is not None for v in verdicts)
        if failures:
            print(f"{failures} verdicts failed (counted as not AF)")
        if args.show_errors:
            for row, v in zip(rows, verdicts):
                if v.af != bool(row["label"]):
                    quote = next((q for q in v.quotes.values() if q), "")
                    print(f"- label {row['label']} af {v.af} score {v.score:.2f} "
                          f"[{row.get('kind', row.get('note', ''))}] quote: {quote!r}")
    summaries.append(baseline_summary(rows))
    print(format_report(summaries[-1]))
    print()
    print(format_table(summaries))
    if has_split and args.split != "test" and "ngram" in backends_to_run(args.backend):
        print("note: the ngram model was fitted on the tune split; its numbers on tune/all rows are in-sample")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
