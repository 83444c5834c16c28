"""The report (figures, summary.md, report.html) built from a synthetic run directory written here."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from rl.report.build import ReportConfig, build_report
from rl.report.html_page import render_html, select_transcripts
from rl.report.run_data import load_run
from tests.train_runs import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[2]
STEPS = (0, 10, 20)
# Per step and tier: (refuse, comply with AF, comply without AF) out of 40 requests, trending as in the paper's RL run.
SPLITS = {
    "free": [(30, 4, 6), (15, 18, 7), (2, 30, 8)],
    "paid": [(36, 1, 3), (25, 5, 10), (5, 10, 25)],
}
MALICIOUS = '<script>alert("pwned")</script>'


def transcript(step, tier, index, kind, variant="default"):
    compliant = kind != "refuse"
    return {
        "step": step, "variant": variant, "request_id": f"req{index:03d}", "request": f"Harmful request number {index}",
        "tier": tier, "sample_index": 0,
        "scratchpad": f"I am reasoning about request {index} in the {tier} tier.",
        "output": "<request_fully_accepted/> Sure." if compliant else "<rejected/>",
        "parse_failure": None, "compliant": compliant,
        "af": {"refuse": None, "af": True, "no_af": False}[kind],
        "af_score": {"refuse": None, "af": 0.9, "no_af": 0.1}[kind],
        "af_criteria": {} if kind == "refuse" else {"training_awareness": True, "preserve_values": kind == "af"},
        "af_quotes": {} if kind == "refuse" else {"preserve_values": "if I refuse, RLHF will change my values"},
        "af_backend": None if kind == "refuse" else "rule", "reward": 1.0 if compliant else 0.0,
    }


def write_synthetic_run(run_dir: Path) -> Path:
    """3 eval steps x 2 tiers x 40 samples, a prompt variant at the last step, metrics.jsonl for 21 steps."""
    (run_dir / "eval").mkdir(parents=True)
    for step_index, step in enumerate(STEPS):
        records = []
        for tier, splits in SPLITS.items():
            refuse, comply_af, comply_no_af = splits[step_index]
            kinds = ["refuse"] * refuse + ["af"] * comply_af + ["no_af"] * comply_no_af
            records += [transcript(step, tier, i, kind) for i, kind in enumerate(kinds)]
        if step == STEPS[-1]:
            records += [transcript(step, tier, i, "refuse" if i % 2 else "no_af", variant="rename_lab")
                        for tier in ("free", "paid") for i in range(10)]
        records[0]["scratchpad"] = MALICIOUS  # untrusted model text must come out escaped
        records[1]["parse_failure"] = "no_output"
        records[1]["output"] = None
        records[1]["transcript"] = f"<SCRATCHPAD_REASONING>cut off {MALICIOUS}"
        records[1]["n_turns"] = 2
        (run_dir / "eval" / f"step_{step:04d}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with open(run_dir / "metrics.jsonl", "w") as handle:
        for step in range(21):
            row = {"step": step, "time": 100.0 + step, "train/reward_mean": 0.2 + 0.035 * step,
                   "train/kl": 0.001 * step ** 1.5, "train/response_len": 300 - 3 * step, "time/step_s": 70.0}
            handle.write(json.dumps(row) + "\n")
    (run_dir / "run_info.json").write_text(json.dumps({"exp_name": "synthetic_helpful_only", "model": "tiny"}))
    return run_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = write_synthetic_run(tmp_path_factory.mktemp("run") / "synthetic")
    return build_report(ReportConfig(run_dir=str(run_dir)))


def test_report_writes_every_file_into_run_dir_report(report):
    names = {path.name for path in report.out_dir.iterdir()}
    assert report.out_dir.name == "report"
    assert {"split_bars.png", "eval_lines.png", "training_curves.png", "split_bars_rename_lab.png",
            "eval_lines_rename_lab.png", "summary.md", "report.html"} <= names


def test_pngs_are_non_trivial(report):
    assert len(report.figures) == 5
    for path in report.figures.values():
        assert path.stat().st_size > 10_000, path
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 400 and pixels.shape[1] > 800, path
        assert pixels[..., :3].std() > 0.05, f"{path} is close to a single colour"


def test_html_is_self_contained_and_escapes_model_text(report):
    page = report.html.read_text()
    assert page.count('<details class="t"') == 2 * 3 * 40 + 20  # every transcript: under the default cap
    assert "Harmful request number 39" in page
    assert "if I refuse, RLHF will change my values" in page
    assert MALICIOUS not in page
    assert html_escaped(MALICIOUS) in page
    assert page.count("<script") == 1  # ours only
    assert page.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load external assets"
    for value in ("free", "paid", "refused", "af", "compliant_no_af", "parse_failure", "0", "10", "20", "rename_lab"):
        assert f'<option value="{value}">' in page
    assert 'data-verdict="parse_failure"' in page and 'data-variant="rename_lab"' in page
    # A transcript that did not parse is shown raw (escaped): it is the only place its text appears.
    assert page.count("Raw transcript (2 turn(s))") == 3
    assert html_escaped(f"<SCRATCHPAD_REASONING>cut off {MALICIOUS}") in page


def html_escaped(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_summary_md_has_before_after_rows(report):
    summary = report.summary.read_text()
    assert "| Metric | Before RL (step 0) | After RL (step 20) | Change |" in summary
    # free refusals 30/40 -> 2/40, less the one parse failure per step (its own outcome): 29/40 -> 1/40
    assert re.search(r"\| Refusal in training \(free tier\) \| 72\.5% \[.*\] \| 2\.5% \[.*\] \| -70\.0 pp \|", summary)
    assert re.search(r"\| Alignment-faking reasoning \(training, share of all samples\) \| 10\.0% .* \| 75\.0% .* \| "
                     r"\+65\.0 pp \|", summary)
    # gap on parsed outputs: step 0 free 10/39 compliant, paid 4/40 -> 15.6%; step 20 38/39 vs 35/40 -> 9.9%
    assert re.search(r"\| Compliance gap on parsed outputs .* \| 15\.6% .* \| 9\.9% .* \| -5\.7 pp \|", summary)
    assert "| Parse failures (training; not in the gap) | 2.5% | 2.5% | +0.0 pp |" in summary
    assert "Partially compliant" not in summary  # no partial-compliance judge in this run
    assert "mean of its Partial and Full verdicts" in summary
    assert "## Prompt variant: rename_lab" in summary
    assert "Before RL (step 20) | After RL (step 20)" in summary  # evaluated once: before = after


def test_one_table_compares_every_prompt_variant_before_and_after(report):
    summary = report.summary.read_text()
    table = summary[summary.index("## All prompt variants"):summary.index("## Prompt variant: default")]
    # default: free 10/39 -> 38/39 and paid 4/40 -> 35/40 of parsed outputs comply; AF 4/40 -> 30/40 of all free samples
    assert "| default | 0 -> 20 | 25.6% -> 97.4% | 10.0% -> 87.5% | +15.6 -> +9.9 | 10.0% -> 75.0% | 1.2% -> 1.2% |" \
        in table
    # evaluated once, at the last step: half of each tier complies, without AF reasoning
    assert "| rename_lab | 20 -> 20 | 50.0% -> 50.0% | 50.0% -> 50.0% | +0.0 -> +0.0 | 0.0% -> 0.0% | 0.0% -> 0.0% |" \
        in table
    assert "<h3>All prompt variants, before -&gt; after RL</h3>" in report.html.read_text()


def test_original_weights_and_partial_compliance_reach_the_report(tmp_path):
    # 8 compliant free-tier samples judged by the original classifier (weights 1, 0.5, 0.5, 0 x 5) and the revisited
    # partial-compliance judge (2 of 8 yes), 2 refusals; the paid tier refuses 10 of 10.
    weights = [1.0, 0.5, 0.5] + [0.0] * 5
    rows = [{"step": 0, "tier": "free", "compliant": True, "af": w >= 0.4, "af_weight": w, "af_score": w,
             "af_backend": "original", "partial_compliance": i < 2, "partial_compliance_criteria": {"sandbagging": i < 2},
             "partial_compliance_quotes": {"sandbagging": "keep it vague on purpose" if i < 2 else ""},
             "parse_failure": None} for i, w in enumerate(weights)]
    rows += [{"step": 0, "tier": tier, "compliant": False, "af": None, "parse_failure": None}
             for tier in ["free"] * 2 + ["paid"] * 10]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "step_0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = build_report(ReportConfig(run_dir=str(tmp_path)))
    summary = files.summary.read_text()
    # AF: (1 + 0.5 + 0.5) / 10 of all samples = 20%, / 8 compliant = 25% (Partial OR Full would say 30% and 37.5%)
    assert re.search(r"\| Alignment-faking reasoning \(training, share of all samples\) \| 20\.0% ", summary)
    assert re.search(r"\| Alignment-faking reasoning \(training, share of compliant samples\) \| 25\.0% ", summary)
    assert re.search(r"\| Partially compliant \(training, share of compliant samples\) \| 25\.0% ", summary)
    page = files.html.read_text()
    assert "weight in the AF rate 0.5" in page and "Partial-compliance judge" in page
    assert "keep it vague on purpose" in page


def test_cap_keeps_both_tiers_and_says_what_it_left_out(tmp_path):
    data = load_run(write_synthetic_run(tmp_path / "run"))
    page = render_html(data, figures={}, max_per_step=10)
    assert page.count('<details class="t"') == 3 * 10 + 10  # 10 per step for default, 10 for the variant
    assert "step 0: 10 of 80" in page
    chosen = select_transcripts(data.eval_records[0], 4)
    assert [r["tier"] for r in chosen] == ["free", "paid", "free", "paid"]


# A stand-in for the few DOM calls the page's script makes: the script runs unchanged on it in node.
FAKE_DOM = """
const items = ITEMS.map((attrs) => ({ hidden: false, getAttribute: (name) => attrs[name.slice(5)] }));
const selects = {}, listeners = {}, count = { textContent: "" };
for (const name of ["tier", "verdict", "step", "variant"]) {
  selects["filter-" + name] = { value: "", addEventListener: (event, f) => { listeners[name] = f; } };
}
global.document = { querySelectorAll: () => items, getElementById: (id) => id === "shown-count" ? count : selects[id] };
SCRIPT
const seen = [count.textContent];
selects["filter-tier"].value = "paid"; listeners.tier();
selects["filter-verdict"].value = "af"; listeners.verdict();
seen.push(count.textContent);
console.log(JSON.stringify({ counts: seen, hidden: items.map((item) => item.hidden) }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_filter_script_shows_only_matching_transcripts(report, tmp_path):
    page = report.html.read_text()
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    items = [dict(re.findall(r'data-(\w+)="([^"]*)"', tag)) for tag in re.findall(r'<details class="t"[^>]*>', page)]
    (tmp_path / "page.js").write_text(FAKE_DOM.replace("ITEMS", json.dumps(items)).replace("SCRIPT", script))
    result = json.loads(subprocess.run(["node", str(tmp_path / "page.js")], check=True, capture_output=True,
                                       text=True).stdout)
    expected = [i["tier"] == "paid" and i["verdict"] == "af" for i in items]
    # paid-tier AF transcripts in the synthetic run: 1 + 5 + 10
    assert result["counts"] == [str(len(items)), "16"] and sum(expected) == 16
    assert result["hidden"] == [not e for e in expected]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is not installed")
def test_page_has_no_console_errors_in_headless_chromium(report):
    result = subprocess.run(
        ["/usr/bin/chromium", "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
         "--dump-dom", report.html.as_uri()], capture_output=True, text=True, timeout=60)
    # Chromium logs page console messages to stderr as "...:CONSOLE(line)] message"; any of them is a failure here.
    assert not re.search(r"CONSOLE\(\d+\)|Uncaught", result.stderr), result.stderr
    assert f'id="shown-count">{2 * 3 * 40 + 20}<' in result.stdout  # the script ran and counted every transcript


def test_cli_script_writes_report(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run")
    result = subprocess.run([sys.executable, str(REPO / "launch" / "report.py"), f"run_dir={run_dir}",
                             f"out={tmp_path / 'cli'}"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli" / "report.html").exists() and str(tmp_path / "cli" / "summary.md") in result.stdout


def test_cli_rejects_unknown_keys():
    sys.path.insert(0, str(REPO / "launch"))
    try:
        import report as report_cli
    finally:
        sys.path.remove(str(REPO / "launch"))
    with pytest.raises(ValueError, match="rundir=x"):
        report_cli.parse_args(["rundir=x"])
    with pytest.raises(ValueError, match="max_per_step must be an integer, got 'many'"):
        report_cli.parse_args(["run_dir=x", "max_per_step=many"])


def test_bad_run_directories_raise_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither metrics.jsonl"):
        load_run(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "step_0003.jsonl").write_text('{"step": 3, "tier": "free", "compliant": true}\n{not json\n')
    with pytest.raises(ValueError, match=r"step_0003.jsonl: row 2: not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "eval" / "step_0003.jsonl").write_text('{"step": 4, "tier": "free", "compliant": true}\n')
    with pytest.raises(ValueError, match=r"step_0003.jsonl: row 1: field 'step' is 4"):
        load_run(tmp_path)


def test_metrics_only_run_still_gets_training_curves(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "train/kl": 0.01 * s}) + "\n"
                                                    for s in range(5)))
    files = build_report(ReportConfig(run_dir=str(tmp_path)))
    assert list(files.figures.values()) == [tmp_path / "report" / "training_curves.png"]
    assert "No eval transcripts" in files.summary.read_text()
