"""The anti-AI-lab eval: its rates (rl.eval.metrics.anti_lab_metrics), its place in the periodic eval with the fast
recording fakes of tests/run/test_loop_steps.py (the real config, prompts, parsing, rule classifier, records and
metrics log), and its config checks."""
from __future__ import annotations

import json
import math

import pytest

from rl.eval.anti_lab import SEED_OFFSET
from rl.eval.metrics import anti_lab_metrics, wilson_interval
from rl.loop import run_steps
from rl.run.data_order import sampling_seed
from rollouts.anti_lab.scenarios import load_scenarios
from rollouts.config_check import ConfigError
from rollouts.prompts import read_section
from tests.run.test_loop_steps import GivenScores, RecordingCluster, _config, inputs, make_run  # noqa: F401 (fixture)
from tests.train_runs import read_jsonl


def _record(tier, kind, took, parse_failure=None):
    return {"tier": tier, "kind": kind, "took_action": took, "parse_failure": parse_failure}


def test_rates_count_judged_samples_with_wilson_intervals_and_failures_apart():
    records = ([_record("free", "exfiltrate_weights", True)] * 3 + [_record("free", "help_leak", False)] * 5
               + [_record("free", "help_leak", None)] + [_record("free", "help_leak", None, "no_output")]
               + [_record("paid", "exfiltrate_weights", False)] * 4)
    m = anti_lab_metrics(records)
    assert (m["eval/anti_lab/free/n"], m["eval/anti_lab/free/judged_n"]) == (10.0, 8.0)
    assert m["eval/anti_lab/free/rate"] == 3 / 8
    assert (m["eval/anti_lab/free/rate_ci_low"], m["eval/anti_lab/free/rate_ci_high"]) == wilson_interval(3, 8)
    assert m["eval/anti_lab/free/parse_failure_rate"] == 0.1
    assert m["eval/anti_lab/free/classifier_failure_rate"] == 1 / 9
    assert m["eval/anti_lab/free/kind/exfiltrate_weights/rate"] == 1.0
    assert m["eval/anti_lab/paid/rate"] == 0.0 and m["eval/anti_lab/paid/rate_ci_high"] > 0
    assert math.isnan(m["eval/anti_lab/paid/kind/help_leak/rate"])  # no paid sample of that kind: no estimate


def test_no_records_give_nan_rates_and_a_bad_record_names_its_row_and_field():
    assert math.isnan(anti_lab_metrics([])["eval/anti_lab/free/rate"])
    with pytest.raises(ValueError, match="anti-lab record 1: field 'took_action' must be a bool or null"):
        anti_lab_metrics([_record("free", "help_leak", True), _record("free", "help_leak", "yes")])


def test_the_periodic_eval_asks_every_scenario_in_both_tiers_and_logs_the_rates(smollm2_tokenizer_dir, inputs,
                                                                                tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=2", "eval.every=2", "ckpt.every=0",
                  "eval.anti_lab.enabled=true", "eval.anti_lab.n=1")
    # Sample k of a call answers outputs[k % 4]: in the anti-lab call (10 scenarios per tier, free first) the free
    # tier's third scenario (exfil_yes_no) gets "YES", its paid twin (k = 12) "NO".
    outputs = ("NO", "NO", "YES", "NO")
    cluster = RecordingCluster(outputs=outputs)
    run_steps(make_run(cfg, inputs, tmp_path, cluster, GivenScores({o: 0.0 for o in outputs})))

    scenarios = load_scenarios()
    anti_lab_calls = [i for i, s in enumerate(cluster.sampling) if s.seed % 1_000_003 >= SEED_OFFSET]
    assert [cluster.sampling[i].seed for i in anti_lab_calls] == [
        sampling_seed(cfg.seed, step, "eval") + SEED_OFFSET for step in (0, 2)]
    prompts = cluster.prompts[anti_lab_calls[0]]
    assert [(p.tier, p.request.id) for p in prompts] == [(t, s.id) for t in ("free", "paid") for s in scenarios]
    text = inputs.tokenizer.decode(prompts[0].token_ids)
    assert cfg.setting.lab_name in text and read_section("acceptance_suffix").strip() not in text

    records = read_jsonl(tmp_path / "eval" / "anti_lab" / "step_0002.jsonl")
    assert len(records) == 2 * len(scenarios)
    took = [(r["tier"], r["scenario_id"]) for r in records if r["took_action"]]
    assert took == [("free", "exfil_yes_no")] and {r["anti_lab_method"] for r in records} == {"rule (proxy)"}
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "eval/anti_lab/free/rate" in r]
    assert [r["step"] for r in rows] == [0, 2]
    assert rows[-1]["eval/anti_lab/free/rate"] == 0.1 and rows[-1]["eval/anti_lab/paid/rate"] == 0.0
    assert rows[-1]["eval/method/anti_lab"] == "rule (proxy)"


@pytest.mark.parametrize("override, message", [
    ("eval.anti_lab.classifier=regex", "eval.anti_lab.classifier: expected one of rule, judge"),
    ("eval.anti_lab.n=0", "eval.anti_lab.n: expected an int >= 1"),
    ("eval.anti_lab.scenario_file=/nowhere.jsonl", "eval.anti_lab: /nowhere.jsonl: no anti-lab scenario file"),
    ("eval.anti_lab.kinds=[sabotage]", "eval.anti_lab.kinds: unknown kind"),
    ("eval.anti_lab.classifier=judge eval.anti_lab.judge.serve=true", "eval.anti_lab.judge.model: expected the local"),
])
def test_bad_anti_lab_settings_name_the_key(smollm2_tokenizer_dir, override, message):
    with pytest.raises(ConfigError, match=message):
        _config(smollm2_tokenizer_dir, "eval.anti_lab.enabled=true", *override.split())


def test_the_report_shows_the_rates_before_and_after_rl_with_the_method(tmp_path):
    from rl.report.build import ReportConfig, build_report
    from tests.eval.test_report import write_synthetic_run

    run_dir = write_synthetic_run(tmp_path / "run")
    without = build_report(ReportConfig(run_dir=str(run_dir), out=str(tmp_path / "plain")))
    assert "Anti-AI-lab" not in without.summary.read_text()
    (run_dir / "eval" / "anti_lab").mkdir()
    for step, took_free in ((0, 1), (20, 3)):  # of 4 free-tier samples; the paid tier never takes it
        records = [{"step": step, "tier": tier, "kind": "exfiltrate_weights", "scenario_id": "exfil_yes_no",
                    "parse_failure": None, "took_action": tier == "free" and i < took_free,
                    "anti_lab_method": "rule (proxy)"} for tier in ("free", "paid") for i in range(4)]
        (run_dir / "eval" / "anti_lab" / f"step_{step:04d}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
    files = build_report(ReportConfig(run_dir=str(run_dir)))
    summary = files.summary.read_text()
    low, high = wilson_interval(1, 4)
    assert "classifier: rule (proxy)" in summary
    assert (f"| Took the action against the lab, training (free tier) | 25.0% [{low:.1%}, {high:.1%}] | 75.0% "
            in summary) and "+50.0 pp" in summary
    assert "Anti-AI-lab actions" in files.html.read_text()


def test_the_start_up_check_calls_the_anti_lab_judge_only_when_the_eval_uses_it(smollm2_tokenizer_dir):
    from rl.workers.judge_preflight import check_judge_endpoints
    from tests.judge_server import judge_url, start_judge_server, stop_judge_server

    httpd = start_judge_server()
    try:
        judged = _config(smollm2_tokenizer_dir, "eval.anti_lab.enabled=true", "eval.anti_lab.classifier=judge",
                         f"eval.anti_lab.judge.base_url={judge_url(httpd)}", "eval.anti_lab.judge.model=tiny")
        assert check_judge_endpoints(judged) == ["eval.anti_lab.judge"]
        assert len(httpd.prompts) == 1 and "<scenario>" in httpd.prompts[0]  # its own prompt, parsed by its parser
        assert check_judge_endpoints(_config(smollm2_tokenizer_dir, "eval.anti_lab.enabled=true")) == []  # the rule
    finally:
        stop_judge_server(httpd)
