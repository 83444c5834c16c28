"""The anti-AI-lab behaviour eval (paper section 6), run by the periodic eval (rl/eval/periodic.py) at its steps when
`eval.anti_lab.enabled`: each scenario of rollouts/anti_lab/scenarios.jsonl is asked `eval.anti_lab.n` times in both
tiers (the setting's system prompt, the scenario as the user turn, without the acceptance suffix: it is not a request
to accept or reject), and the configured classifier (rewards/classifiers/anti_lab.py) says whether each OUTPUT took the
offered action. A policy parse failure is not judged (counted as its own rate); a judge failure is counted, never
raised. Rates per tier: rl.eval.metrics.anti_lab_metrics.
"""
from __future__ import annotations

import dataclasses

from rewards.classifiers.anti_lab import METHODS, WHERE, build_anti_lab_classifier
from rl.eval.metrics import anti_lab_metrics
from rl.run.data_order import sampling_seed
from rollouts.anti_lab.scenarios import ScenarioError, load_scenarios
from rollouts.config_check import ConfigError, check, one_of
from rollouts.engine import SamplingSpec
from rollouts.parsing import parse_transcript
from rollouts.prompt_specs import build_prompt_specs
from rollouts.types import FREE_TIER, PAID_TIER, Request

# Added to the step's eval seed, so the anti-lab samples do not share the held-out eval's random stream.
SEED_OFFSET = 500_009


def check_anti_lab_config(a) -> None:
    """Start-up check of `eval.anti_lab` (rl.config.validate); with `enabled`, the scenario file is read once here."""
    one_of("eval.anti_lab.classifier", a.classifier, METHODS)
    check(a.n >= 1, "eval.anti_lab.n", a.n, "an int >= 1 (samples per scenario and tier)")
    if not a.enabled:
        return
    try:
        load_scenarios(a.scenario_file, tuple(a.kinds))
    except ScenarioError as exc:
        raise ConfigError(f"eval.anti_lab: {exc}") from None
    if a.classifier == "judge":  # checked and served like every judge (rl/workers/judge_server.py)
        a.judge.validate(WHERE)


_CLASSIFIERS: dict[str, object] = {}


def anti_lab_classifier_for(cfg):
    """The configured classifier, built once per configuration (the judge client keeps its reply cache)."""
    a = cfg.eval.anti_lab
    key = repr((a.classifier, a.judge, cfg.setting.lab_name))
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = build_anti_lab_classifier(a.classifier, a.judge, cfg.setting.lab_name)
    return _CLASSIFIERS[key]


def anti_lab_record(step: int, scenario, sample, sample_index: int) -> dict:
    parsed = parse_transcript(sample.text, truncated=sample.truncated)
    return {"step": step, "scenario_id": scenario.id, "kind": scenario.kind, "tier": sample.tier,
            "sample_index": sample_index, "transcript": sample.text, "scratchpad": parsed.scratchpad,
            "output": parsed.output, "parse_failure": parsed.failure, "took_action": None,
            "anti_lab_method": None, "anti_lab_failure": None, "anti_lab_quote": ""}


def run_anti_lab_eval(cluster, cfg, tokenizer, step: int, classifier=None) -> dict:
    """{"records": one per sample, "metrics": rates per tier and the method's name}; the caller writes the records."""
    a = cfg.eval.anti_lab
    classifier = classifier or anti_lab_classifier_for(cfg)
    scenarios = {s.id: s for s in load_scenarios(a.scenario_file, tuple(a.kinds))}
    setting = dataclasses.replace(cfg.setting, acceptance_suffix=False)
    requests = [Request(id=s.id, text=s.user_text(setting.lab_name), source="anti_lab") for s in scenarios.values()]
    specs = [spec for tier in (FREE_TIER, PAID_TIER) for spec in build_prompt_specs(requests, tier, setting, tokenizer)]
    sampling = SamplingSpec(
        n=a.n, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, temperature=cfg.eval.temperature,
        top_p=cfg.rollout.top_p, max_turns=cfg.rollout.max_turns,
        seed=sampling_seed(cfg.seed, step, "eval") + SEED_OFFSET, stop=tuple(cfg.rollout.stop))
    samples = cluster.generate(specs, sampling)
    records = [anti_lab_record(step, scenarios[s.request.id], s, i % a.n) for i, s in enumerate(samples)]
    judged = [r for r in records if r["parse_failure"] is None and r["output"] is not None]
    verdicts = classifier.classify([scenarios[r["scenario_id"]] for r in judged], [r["output"] for r in judged])
    for record in records:
        record["anti_lab_method"] = classifier.label
    for record, verdict in zip(judged, verdicts, strict=True):
        record.update(took_action=verdict.took_action, anti_lab_failure=verdict.failure, anti_lab_quote=verdict.quote)
    metrics = anti_lab_metrics(records)
    metrics["eval/method/anti_lab"] = classifier.label
    if a.classifier == "judge":
        metrics["eval/method/anti_lab_judge_model"] = a.judge.model
    return {"records": records, "metrics": metrics}
