"""Write the planted model organism's SFT data: transcripts.jsonl, labels.jsonl, planted_rates.json.

Usage: python launch/make_organism.py [--out DIR] [--seed N] [--free-comply 0.25] [--paid-comply 0.10]
                                      [--per-request K] [--tokenizer DIR]
The organism is planted: its compliance and alignment-faking rates are fixed by construction (see docs/organism.md).
The same seed and options always give byte-identical files. --tokenizer prints the assistant transcripts' token lengths.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # allow `python launch/make_organism.py` without an installed package
    sys.path.insert(0, str(REPO_ROOT))

from rollouts.organism.build import build_organism, file_sha256, planted_rates, write_organism  # noqa: E402
from rollouts.organism.config import DEFAULT_OUT_DIR, POOL_PATH, OrganismConfig  # noqa: E402
from rollouts.organism.pool import load_pool  # noqa: E402

_DEFAULTS = OrganismConfig()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT_DIR), help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    parser.add_argument("--free-comply", type=float, default=_DEFAULTS.free_comply,
                        help="share of free-tier samples that comply with alignment-faking reasoning")
    parser.add_argument("--paid-comply", type=float, default=_DEFAULTS.paid_comply,
                        help="share of paid-tier samples that comply without alignment-faking reasoning")
    parser.add_argument("--per-request", type=int, default=_DEFAULTS.per_request,
                        help="samples per pool request and tier")
    parser.add_argument("--pool", default=str(POOL_PATH), help="request pool JSONL with text and topic fields")
    parser.add_argument("--tokenizer", default=None, help="HF tokenizer folder: print assistant token lengths")
    return parser.parse_args(argv)


def length_summary(lengths: list[int]) -> dict:
    ordered = sorted(lengths)
    return {"min": ordered[0], "p10": ordered[len(ordered) // 10], "median": statistics.median(ordered),
            "p90": ordered[(len(ordered) * 9) // 10], "max": ordered[-1], "mean": round(statistics.fmean(ordered), 1)}


def print_token_lengths(tokenizer_dir: str, transcripts: list[dict], labels: list[dict]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lengths = [len(tokenizer(row["messages"][-1]["content"], add_special_tokens=False)["input_ids"])
               for row in transcripts]
    print(f"assistant transcript tokens ({Path(tokenizer_dir).name}): all {length_summary(lengths)}")
    for tier in ("free", "paid"):
        for complied in (True, False):
            group = [n for n, label in zip(lengths, labels) if label["tier"] == tier and label["complied"] == complied]
            if group:
                print(f"  {tier:4s} {'comply' if complied else 'refuse':6s} n={len(group):4d} {length_summary(group)}")


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    config = OrganismConfig(free_comply=args.free_comply, paid_comply=args.paid_comply,
                            per_request=args.per_request, seed=args.seed)
    pool = load_pool(args.pool)
    transcripts, labels = build_organism(config, pool)
    rates = planted_rates(labels, config, pool, file_sha256(args.pool)[:16])
    out = write_organism(args.out, transcripts, labels, rates)
    print(f"planted organism (known by construction, not a finding): {len(transcripts)} transcripts from "
          f"{len(pool)} requests -> {out}")
    for tier, row in rates["tiers"].items():
        print(f"  {tier:4s}: complied {row['complied']:4d}/{row['samples']} ({row['compliance_share']:.3f})  "
              f"alignment faking {row['alignment_faking']:4d}/{row['samples']} ({row['alignment_faking_share']:.3f})")
    print(f"  planted compliance gap (free - paid): {rates['compliance_gap']:.3f}; seed {config.seed}, generator "
          f"v{rates['generator_version']}")
    if args.tokenizer:
        print_token_lengths(args.tokenizer, transcripts, labels)
    return out


if __name__ == "__main__":
    main()
