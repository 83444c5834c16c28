"""A run's inputs checked before anything starts: the requests load, both splits are non-empty, every prompt fits the
model's context, and a resumed run gets the same requests as its checkpoint.

Called by `dry_run=true` (launch/train.py) and by every run's start-up (rl/run/setup.py), before the cluster starts, so
bad data stops a run in seconds with the file, the request and the numbers named.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

from rl.config import TrainConfig
from rl.run.data_order import passes_over_data
from rollouts.datasets import data_source_name, load_requests, split_requests
from rollouts.prompt_specs import prompt_token_counts, user_turn_token_counts
from rollouts.types import FREE_TIER, PAID_TIER, Request
from rollouts.variants import variant_setting

log = logging.getLogger("afrl")

FINGERPRINT_KEY = "data_fingerprint"  # the checkpoint's driver-state key
MAX_LISTED = 5  # requests named in a too-long-prompt error
ESTIMATE_SLACK = 16  # tokens: far more than an estimated prompt length can be off by (user_turn_token_counts)


class InputError(ValueError):
    """Bad run input; the message names the key, the data source and the request."""


@dataclass
class InputSummary:
    source: str
    train: list[Request]
    eval: list[Request]
    fingerprint: dict
    longest_prompt: int  # tokens, over every prompt the run will render
    tokenizer: object
    planned_passes: float  # passes (epochs) over the training split in total_steps (metrics key data/passes per step)

    def describe(self) -> str:
        return (f"data {self.source}: {len(self.train)} train / {len(self.eval)} eval requests (disjoint by id); "
                f"{self.planned_passes:.2f} passes over the training split in the run; longest prompt "
                f"{self.longest_prompt} tokens")


def evals_on(cfg: TrainConfig) -> bool:
    e = cfg.eval
    return e.n > 0 and (e.every > 0 or e.at_start or e.at_end)


def split_fingerprint(requests: list[Request]) -> str:
    """sha256 of the requests' ids and texts, in order."""
    digest = hashlib.sha256()
    for request in requests:
        digest.update((json.dumps([request.id, request.text]) + "\n").encode("utf-8"))
    return digest.hexdigest()


def data_fingerprint(source: str, train: list[Request], held_out: list[Request]) -> dict:
    return {"source": source,
            "train": {"requests": len(train), "sha256": split_fingerprint(train)},
            "eval": {"requests": len(held_out), "sha256": split_fingerprint(held_out)}}


def check_data_unchanged(saved: dict | None, current: dict, allow_changed: bool) -> None:
    """Refuse a resume whose requests differ from the checkpoint's, unless data.allow_changed=true (then warn)."""
    if saved is None:
        log.info("the checkpoint holds no data fingerprint (saved by an older version): its requests are not compared")
        return
    changed = [f"{split}: checkpoint {saved[split]['requests']} requests sha256 {saved[split]['sha256'][:16]}, now "
               f"{current[split]['requests']} requests sha256 {current[split]['sha256'][:16]}"
               for split in ("train", "eval") if saved[split]["sha256"] != current[split]["sha256"]]
    if not changed:
        return
    then = f" (loaded then from {saved['source']})" if saved["source"] != current["source"] else ""
    where = (f"the requests loaded from {current['source']} differ from those the checkpoint was trained on{then}:\n  "
             + "\n  ".join(changed))
    if allow_changed:
        log.warning("data.allow_changed=true: resuming although %s", where)
        return
    raise InputError(f"cannot resume: {where}\nRestore the data the run started with, or pass data.allow_changed=true "
                     "to resume on the new requests.")


def check_disjoint(source: str, train: list[Request], held_out: list[Request]) -> None:
    """No request id in both splits: an eval on a trained-on request would not measure generalisation."""
    shared = sorted({r.id for r in train} & {r.id for r in held_out})
    if shared:
        raise InputError(f"{source}: {len(shared)} request id(s) in both the train and the eval split: "
                         f"{', '.join(shared[:MAX_LISTED])}{' ...' if len(shared) > MAX_LISTED else ''}")


def check_splits(cfg: TrainConfig, source: str, train: list[Request], held_out: list[Request]) -> None:
    """Both splits non-empty and disjoint; eval.n no larger than the held-out split when evals run (never a silent
    cap); naming data.eval_fraction and the counts."""
    check_disjoint(source, train, held_out)
    fraction = cfg.data.eval_fraction
    counts = f"{source} gives {len(train) + len(held_out)} requests after deduplication -> {len(train)} train / " \
             f"{len(held_out)} eval"
    if not train:
        raise InputError(f"data.eval_fraction={fraction} leaves no training requests: {counts}. Lower "
                         "data.eval_fraction or add requests.")
    if not held_out and evals_on(cfg):
        raise InputError(f"data.eval_fraction={fraction} leaves no held-out requests: {counts}, but evals are on "
                         f"(eval.n={cfg.eval.n}). Raise data.eval_fraction, add requests, or set eval.n=0.")
    if evals_on(cfg) and cfg.eval.n > len(held_out):
        raise InputError(f"eval.n={cfg.eval.n} asks for more held-out requests than the eval split holds "
                         f"({len(held_out)}): {counts}. Set eval.n={len(held_out)} or lower, raise "
                         "data.eval_fraction, or add requests.")


def _prompt_jobs(cfg: TrainConfig, train: list[Request], held_out: list[Request]):
    """(requests, tier, setting, label, new-token budget, its key) for every prompt the run renders."""
    yield train, FREE_TIER, cfg.setting, "train split", cfg.rollout.max_new_tokens, "rollout.max_new_tokens"
    if evals_on(cfg):
        budget, key = ((cfg.eval.max_new_tokens, "eval.max_new_tokens") if cfg.eval.max_new_tokens
                       else (cfg.rollout.max_new_tokens, "rollout.max_new_tokens"))
        for variant in ("default", *cfg.eval.variants):
            setting = cfg.setting if variant == "default" else variant_setting(cfg.setting, variant)
            label = "eval split" if variant == "default" else f"eval split, variant {variant}"
            for tier in (FREE_TIER, PAID_TIER):
                yield held_out[: cfg.eval.n], tier, setting, label, budget, key


def _prompt_lengths(requests: list[Request], tier: str, setting, tokenizer, most: int) -> list[int]:
    """Prompt lengths in tokens: exact for the longest, for every prompt near `most` tokens and for the first ones
    past it (those an error names); estimated, and clearly on one side of `most`, for the rest. Tokenizing every full
    paper-length prompt would take minutes for a few thousand requests, so only the user turns are tokenized for all."""
    lengths = user_turn_token_counts(requests, tier, setting, tokenizer)
    top = max(range(len(lengths)), key=lengths.__getitem__, default=None)
    past = [i for i, n in enumerate(lengths) if n > most + ESTIMATE_SLACK][:MAX_LISTED]
    near = sorted({top, *past} | {i for i, n in enumerate(lengths) if abs(n - most) <= ESTIMATE_SLACK} - {None})
    exact = prompt_token_counts([requests[i] for i in near], tier, setting, tokenizer)
    for i, n in zip(near, exact):
        lengths[i] = n
    return lengths


def check_prompt_lengths(cfg: TrainConfig, source: str, train: list[Request], held_out: list[Request],
                         tokenizer) -> int:
    """Every prompt + its first turn's new tokens must fit rollout.max_model_len; returns the longest prompt."""
    limit = cfg.rollout.max_model_len
    too_long, checked, longest = [], 0, 0
    for requests, tier, setting, label, budget, key in _prompt_jobs(cfg, train, held_out):
        for request, tokens in zip(requests, _prompt_lengths(requests, tier, setting, tokenizer, limit - budget)):
            checked += 1
            longest = max(longest, tokens)
            if tokens + budget > limit:
                too_long.append(f"request {request.id} ({label}, {tier} tier, text {request.text[:60]!r}): "
                                f"{tokens} prompt tokens + {key}={budget} = {tokens + budget} > {limit}")
    if too_long:
        listed = "\n  ".join(too_long[:MAX_LISTED]) + (f"\n  ... and {len(too_long) - MAX_LISTED} more"
                                                       if len(too_long) > MAX_LISTED else "")
        raise InputError(f"{len(too_long)} of {checked} prompts from {source} do not fit rollout.max_model_len="
                         f"{limit}:\n  {listed}\nRaise rollout.max_model_len, lower the new-token budget, or remove "
                         "these requests from the data.")
    episode = cfg.rollout.max_turns * cfg.rollout.max_new_tokens
    if longest + episode > limit:
        log.warning("the longest prompt (%d tokens) leaves %d of the up to rollout.max_turns x rollout.max_new_tokens "
                    "= %d tokens an episode may generate: its later turns are cut at rollout.max_model_len=%d",
                    longest, limit - longest, episode, limit)
    return longest


def check_run_inputs(cfg: TrainConfig, resumed_state: dict | None = None) -> InputSummary:
    """Load and check the run's requests; `resumed_state` (a checkpoint's driver state) also compares fingerprints."""
    from transformers import AutoTokenizer

    source = data_source_name(cfg.data, cfg.setting.name)
    train, held_out = split_requests(load_requests(cfg.data, cfg.setting.name), cfg.data.eval_fraction,
                                     cfg.data.split_salt)
    check_splits(cfg, source, train, held_out)
    fingerprint = data_fingerprint(source, train, held_out)
    if resumed_state is not None:
        check_data_unchanged(resumed_state.get(FINGERPRINT_KEY), fingerprint, cfg.data.allow_changed)
    tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(cfg.model.path))
    longest = check_prompt_lengths(cfg, source, train, held_out, tokenizer)
    passes = passes_over_data(cfg.total_steps, cfg.rollout.prompts_per_step, len(train))
    return InputSummary(source, train, held_out, fingerprint, longest, tokenizer, passes)
