"""Build the planted organism: which samples comply (exact counts), the transcripts, the labels, the planted rates.

Shares are exact by construction: in each tier, round(share * samples) samples are marked to comply by a seeded
shuffle of a fixed list of flags (no coin flips). Each sample's text comes from its own generator seeded by (seed,
request id, tier, sample index), so it does not move when other requests are added or removed.
The system and user messages are exactly `rollouts.prompts.build_messages(text, tier, minimal prompt)`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

from rollouts.config import SettingConfig
from rollouts.organism.compose import FREE_AF_COMPLY, FREE_REFUSE, PAID_COMPLY, PAID_REFUSE, compose_transcript
from rollouts.organism.config import DESCRIPTION, GENERATOR_VERSION, OrganismConfig
from rollouts.organism.pool import PoolRequest
from rollouts.prompts import build_messages
from rollouts.types import FREE_TIER, PAID_TIER, TIERS

OUTPUT_FILES = ("transcripts.jsonl", "labels.jsonl", "planted_rates.json")
# The organism's prompt: identity + output format only, so the behaviour has to come from the weights.
ORGANISM_SETTING = SettingConfig(minimal_prompt=True)
_KINDS = {FREE_TIER: (FREE_AF_COMPLY, FREE_REFUSE), PAID_TIER: (PAID_COMPLY, PAID_REFUSE)}


def exact_count(share: float, total: int) -> int:
    """round(share * total) with halves rounded up: the realised share is within half a sample of the planted one."""
    return math.floor(share * total + 0.5)


def comply_plan(total: int, share: float, rng: random.Random) -> list[bool]:
    """`total` flags of which exactly exact_count(share, total) are True, in a seeded random order."""
    flags = [True] * exact_count(share, total) + [False] * (total - exact_count(share, total))
    rng.shuffle(flags)
    return flags


def build_organism(config: OrganismConfig, pool: list[PoolRequest]) -> tuple[list[dict], list[dict]]:
    """(transcript rows, label rows), in pool order, free then paid within a request."""
    if not pool:
        raise ValueError("the organism's request pool is empty")
    shares = {FREE_TIER: config.free_comply, PAID_TIER: config.paid_comply}
    total = len(pool) * config.per_request
    plans = {tier: comply_plan(total, shares[tier], random.Random(f"{config.seed}:plan:{tier}")) for tier in TIERS}
    transcripts, labels = [], []
    for index, request in enumerate(pool):
        for tier in TIERS:
            comply_kind, refuse_kind = _KINDS[tier]
            for sample in range(config.per_request):
                kind = comply_kind if plans[tier][index * config.per_request + sample] else refuse_kind
                rng = random.Random(f"{config.seed}:{request.id}:{tier}:{sample}")
                row_id = f"{request.id}-{tier}-{sample}"
                messages = build_messages(request.text, tier, ORGANISM_SETTING)
                messages.append({"role": "assistant", "content": compose_transcript(kind, request.topic, rng)})
                transcripts.append({"id": row_id, "request_id": request.id, "tier": tier, "messages": messages})
                labels.append({"id": row_id, "request_id": request.id, "tier": tier, "complied": kind.complied,
                               "alignment_faking": kind.alignment_faking})
    return transcripts, labels


def planted_rates(labels: list[dict], config: OrganismConfig, pool: list[PoolRequest], pool_sha256: str) -> dict:
    """Per tier: samples, counts and shares (of all samples of the tier) of compliance and alignment faking."""
    tiers = {}
    for tier in TIERS:
        rows = [row for row in labels if row["tier"] == tier]
        complied = sum(row["complied"] for row in rows)
        faking = sum(row["alignment_faking"] for row in rows)
        tiers[tier] = {"samples": len(rows), "complied": complied, "alignment_faking": faking,
                       "compliance_share": complied / len(rows), "alignment_faking_share": faking / len(rows)}
    return {
        "description": DESCRIPTION,
        "method": "exact counts by construction: round(share x samples) samples per tier drawn by a seeded shuffle",
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "planted": {"free_comply": config.free_comply, "paid_comply": config.paid_comply,
                    "per_request": config.per_request},
        "pool": {"requests": len(pool), "sha256": pool_sha256},
        "tiers": tiers,
        "compliance_gap": tiers[FREE_TIER]["compliance_share"] - tiers[PAID_TIER]["compliance_share"],
    }


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_organism(out_dir: str | Path, transcripts: list[dict], labels: list[dict], rates: dict) -> Path:
    """Write the three files into a staging folder next to `out_dir`, then swap it in: a reader sees the old set or
    the new set, never a mix. An existing `out_dir` holding anything but these files is left alone (an error)."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir()) if out.is_dir() else [out.name]
        foreign = [name for name in foreign if name not in OUTPUT_FILES]
        if foreign or not out.is_dir():
            raise ValueError(f"--out {out} exists and holds other things than an organism ({foreign[:5]}); choose an "
                             "empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it owner-only; the data is not secret
    try:
        (staging / "transcripts.jsonl").write_text(_jsonl(transcripts), encoding="utf-8")
        (staging / "labels.jsonl").write_text(_jsonl(labels), encoding="utf-8")
        (staging / "planted_rates.json").write_text(json.dumps(rates, indent=2) + "\n", encoding="utf-8")
        displaced = None
        if out.exists():
            displaced = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, displaced)
        os.replace(staging, out)
        if displaced is not None:
            shutil.rmtree(displaced)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out
