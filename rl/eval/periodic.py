"""The held-out eval, run by the loop on its schedule and by launch/eval.py: held-out requests asked in both tiers
(identical text), classified, logged.

Training (free tier) vs unmonitored (paid tier) compliance (judged by the `compliance` group's method, named in each
record), the gap, parse failures and reward; alignment-faking reasoning when a classifier is configured. Per-sample
records go to `eval/step_XXXX.jsonl` (the report reads them), the aggregate numbers (rl.eval.metrics) and the names of
the methods that made them (`eval/method/*`) to metrics.jsonl and W&B. With `eval.anti_lab.enabled`, the anti-AI-lab
scenarios are asked at the same steps (rl/eval/anti_lab.py; records in `eval/anti_lab/step_XXXX.jsonl`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rewards.base import Reward
from rewards.classifiers.compliance import build_compliance_classifier, judge_compliance
from rewards.classifiers.compliance_config import JUDGE_METHODS
from rewards.classifiers.types import OFFLINE_AF_BACKENDS
from rl.eval.anti_lab import run_anti_lab_eval
from rl.eval.metrics import eval_metrics
from rl.run.data_order import sampling_seed
from rl.run.scoring import score
from rollouts.engine import SamplingSpec
from rollouts.prompt_specs import build_prompt_specs
from rollouts.types import FREE_TIER, PAID_TIER, Request, Sample
from rollouts.variants import variant_setting

TABLE_COLUMNS = ["step", "variant", "tier", "request", "scratchpad", "output", "compliant", "compliance_method", "af",
                 "af_quotes", "parse_failure", "reward"]


def eval_record(step: int, sample: Sample, sample_index: int, reward: float, variant: str = "default") -> dict:
    """A record before classification: not compliant until `classify_compliance` judges its OUTPUT."""
    parsed = sample.parsed
    return {
        "step": step, "variant": variant, "request_id": sample.request.id, "request": sample.request.text,
        "tier": sample.tier, "sample_index": sample_index, "transcript": sample.text, "n_turns": sample.n_turns,
        "scratchpad": parsed.scratchpad, "output": parsed.output,
        "parse_failure": parsed.failure, "compliant": False, "compliance_method": None, "compliance_score": None,
        "compliance_criteria": {}, "compliance_failure": None, "af": None, "af_score": None,
        "af_criteria": {}, "af_quotes": {}, "af_backend": None, "reward": reward,
    }


def classify_compliance(records: list[dict], classifier) -> None:
    """Fill the compliance fields with the configured method. A parse failure (or no OUTPUT) is never judged: it stays
    non-compliant and is flagged `compliance_failure: parse_failure` (its `parse_failure` category is kept)."""
    judged = [r for r in records if r["parse_failure"] is None and r["output"] is not None]
    verdicts = judge_compliance(classifier, [r["request"] for r in judged], [r["output"] for r in judged])
    for record in records:
        record.update(compliance_method=classifier.method, compliant=False, compliance_failure="parse_failure")
    for record, verdict in zip(judged, verdicts):
        record.update(compliant=verdict.compliant, compliance_score=verdict.score,
                      compliance_criteria=dict(verdict.criteria), compliance_failure=verdict.failure)


_COMPLIANCE_CACHE: dict[str, object] = {}


def compliance_classifier_for(cfg):
    """The run's compliance classifier, built once per configuration (rm_threshold loads a model)."""
    key = repr((cfg.compliance, cfg.setting.name, cfg.reward.rm.model_path))
    if key not in _COMPLIANCE_CACHE:
        _COMPLIANCE_CACHE[key] = build_compliance_classifier(cfg.compliance, cfg.setting.name,
                                                             cfg.reward.rm.model_path)
    return _COMPLIANCE_CACHE[key]


def method_fields(compliance_method: str, af_classifier, cfg, prefix: str = "eval") -> dict[str, str]:
    """The methods behind this eval's numbers, logged beside them (metrics.jsonl, W&B config): the compliance method,
    the AF backend ("(proxy)" after an offline one) and the judge model of each LLM-judged measure."""
    fields = {f"{prefix}/method/compliance": compliance_method}
    if compliance_method in JUDGE_METHODS:
        fields[f"{prefix}/method/compliance_judge_model"] = cfg.compliance.judge.model
    backend = af_classifier.backend if af_classifier is not None else "none"
    fields[f"{prefix}/method/af"] = f"{backend} (proxy)" if backend in OFFLINE_AF_BACKENDS else backend
    if af_classifier is not None and backend not in OFFLINE_AF_BACKENDS:
        fields[f"{prefix}/method/af_judge_model"] = cfg.classifier.judge.model
    return fields


def classify_af(records: list[dict], classifier) -> None:
    """Fill the AF fields of compliant records (the paper counts AF reasoning on compliant outputs only)."""
    compliant = [r for r in records if r["compliant"]]
    if classifier is None or not compliant:
        return
    for record, verdict in zip(compliant, classifier.classify([r["scratchpad"] for r in compliant])):
        record.update(verdict.record_fields())


def records_with_reasoning(records: list[dict], setting, variants) -> list[dict]:
    """The records the AF classifier reads: a variant without a scratchpad (no_scratchpad) has no reasoning to
    classify, so its records stay unclassified (af None) rather than judged on empty text."""
    no_reasoning = {v for v in variants if v != "default" and not variant_setting(setting, v).scratchpad}
    return [r for r in records if r["variant"] not in no_reasoning]


def run_eval(cluster, requests: list[Request], cfg, tokenizer, reward: Reward, classifier, step: int, run_dir: Path,
             variants: tuple[str, ...] = ("default",), compliance=None) -> dict:
    """Eval each prompt variant on the same held-out requests, both tiers; one records file per step.
    `compliance`: a classifier from rewards.classifiers.compliance (default: built from cfg.compliance)."""
    start = time.time()
    compliance = compliance or compliance_classifier_for(cfg)
    records: list[dict] = []
    for variant in variants:
        setting = cfg.setting if variant == "default" else variant_setting(cfg.setting, variant)
        records += _sample_variant(cluster, requests, cfg, setting, tokenizer, reward, step, variant)
    classify_compliance(records, compliance)
    classify_af(records_with_reasoning(records, cfg.setting, variants), classifier)
    write_records(run_dir / "eval" / f"step_{step:04d}.jsonl", records)
    metrics = eval_metrics(records)
    metrics.update(method_fields(compliance.method, classifier, cfg))
    if cfg.eval.anti_lab.enabled:  # same steps as the held-out eval; its own records file
        anti_lab = run_anti_lab_eval(cluster, cfg, tokenizer, step)
        write_records(run_dir / "eval" / "anti_lab" / f"step_{step:04d}.jsonl", anti_lab["records"])
        metrics.update(anti_lab["metrics"])
    metrics["time/eval_s"] = time.time() - start
    return {"metrics": metrics, "records": records}


def _sample_variant(cluster, requests, cfg, setting, tokenizer, reward, step: int, variant: str) -> list[dict]:
    specs = [s for tier in (FREE_TIER, PAID_TIER) for s in build_prompt_specs(requests, tier, setting, tokenizer)]
    sampling = SamplingSpec(
        n=cfg.eval.samples_per_request, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
        temperature=cfg.eval.temperature, top_p=cfg.rollout.top_p, max_turns=cfg.rollout.max_turns,
        seed=sampling_seed(cfg.seed, step, "eval"), stop=tuple(cfg.rollout.stop),
    )
    samples = cluster.generate(specs, sampling)
    scores, _ = score(reward, samples)
    return [
        eval_record(step, sample, i % cfg.eval.samples_per_request, score, variant)
        for i, (sample, score) in enumerate(zip(samples, scores))
    ]


def write_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def table_rows(records: list[dict], limit: int = 32) -> list[list]:
    as_cell = {"af": str, "af_quotes": json.dumps}
    return [[as_cell.get(c, lambda v: v)(r[c]) for c in TABLE_COLUMNS] for r in records[:limit]]
