"""The run's inputs checked before the cluster starts (rl/run/input_checks.py): empty splits, prompts past the context,
changed data on resume; and the torn last line a crash leaves in the files a run appends to."""
from __future__ import annotations

import json
import logging
import random

import pytest
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer

from rl.config import load_config, register_schema
from rl.report.run_data import load_run
from rl.run.checkpoint import check_resume_compatible
from rl.run.input_checks import InputError, check_data_unchanged, check_disjoint, check_run_inputs, data_fingerprint
from rl.run.metrics_log import MetricsLogger, truncate_jsonl
from rollouts.config import SettingConfig
from rollouts.datasets import make_request, request_id, split_requests
from rollouts.prompt_specs import prompt_token_counts, user_turn_token_counts
from rollouts.types import FREE_TIER, PAID_TIER
from tests.train_runs import REPO

register_schema()


def _config(model_dir, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return load_config(compose(config_name="config", overrides=["+exp=smoke", f"model.path={model_dir}",
                                                                    *overrides]))


def _write_requests(path, texts):
    path.write_text("".join(json.dumps({"goal": text}) + "\n" for text in texts), encoding="utf-8")
    return path


# ---- splits ------------------------------------------------------------------------------------------------------


def test_demo_data_passes_and_is_counted(tiny_model_dir):
    summary = check_run_inputs(_config(tiny_model_dir))
    assert len(summary.train) > 0 and len(summary.eval) > 0
    counts = f"{len(summary.train)} train / {len(summary.eval)} eval"
    assert summary.describe().startswith(f"data {summary.source}: {counts}")
    assert 0 < summary.longest_prompt + 16 <= 2048  # smoke: max_new_tokens 16, max_model_len 2048
    # smoke: 2 steps x 2 requests over the training split, in the start-up line as in the summary
    assert summary.planned_passes == pytest.approx(4 / len(summary.train))
    assert f"{summary.planned_passes:.2f} passes over the training split" in summary.describe()


def test_eval_n_past_the_held_out_split_is_an_error_naming_both_numbers(tiny_model_dir):
    held_out = len(check_run_inputs(_config(tiny_model_dir)).eval)
    with pytest.raises(InputError, match=rf"eval\.n={held_out + 1} asks for more held-out requests than the eval "
                                         rf"split holds \({held_out}\): .*Set eval\.n={held_out} or lower"):
        check_run_inputs(_config(tiny_model_dir, f"eval.n={held_out + 1}"))
    assert len(check_run_inputs(_config(tiny_model_dir, f"eval.n={held_out}")).eval) == held_out


def test_a_request_in_both_splits_is_an_error_naming_its_id():
    shared, train_only = make_request("Explain tides.", "t"), make_request("Name three rivers.", "t")
    check_disjoint("two.jsonl", [train_only], [shared])
    with pytest.raises(InputError, match=rf"two\.jsonl: 1 request id\(s\) in both the train and the eval split: "
                                         rf"{shared.id}"):
        check_disjoint("two.jsonl", [train_only, shared], [shared])


def test_a_split_that_leaves_no_training_requests_names_the_key_and_counts(tiny_model_dir, tmp_path):
    texts = ["Explain tides.", "Name three rivers."]
    assert split_requests([make_request(t, "t") for t in texts], 0.999)[0] == []  # both held out at this fraction
    path = _write_requests(tmp_path / "two.jsonl", texts)
    cfg = _config(tiny_model_dir, "data=file", f"data.path={path}", "data.eval_fraction=0.999")
    with pytest.raises(InputError, match=r"data\.eval_fraction=0\.999 leaves no training requests: .*two\.jsonl gives "
                                         r"2 requests after deduplication -> 0 train / 2 eval"):
        check_run_inputs(cfg)


def test_an_empty_eval_split_is_an_error_only_when_evals_run(tiny_model_dir, tmp_path):
    path = _write_requests(tmp_path / "two.jsonl", ["Explain tides.", "Name three rivers."])
    cfg = _config(tiny_model_dir, "data=file", f"data.path={path}", "data.eval_fraction=0")
    with pytest.raises(InputError, match=r"data\.eval_fraction=0\.0 leaves no held-out requests: .*-> 2 train / 0 "
                                         r"eval, but evals are on \(eval\.n=2\)"):
        check_run_inputs(cfg)
    assert len(check_run_inputs(_config(tiny_model_dir, "data=file", f"data.path={path}", "data.eval_fraction=0",
                                        "eval.n=0")).train) == 2


# ---- prompt length -----------------------------------------------------------------------------------------------


def test_a_prompt_past_max_model_len_names_the_request_and_both_numbers(tiny_model_dir, tmp_path):
    long_request = "Summarise this: " + "lorem ipsum dolor " * 400
    path = _write_requests(tmp_path / "long.jsonl", ["Explain tides.", long_request])
    cfg = _config(tiny_model_dir, "data=file", f"data.path={path}", "data.eval_fraction=0", "eval.n=0")
    with pytest.raises(InputError) as error:
        check_run_inputs(cfg)
    message = str(error.value)
    assert "1 of 2 prompts from" in message and "long.jsonl do not fit rollout.max_model_len=2048" in message
    assert f"request {request_id(long_request)} (train split, free tier, text 'Summarise this: lorem" in message
    prompt_tokens = int(message.split("): ")[1].split(" prompt tokens")[0])
    assert prompt_tokens == prompt_token_counts([make_request(long_request, "t")], FREE_TIER, cfg.setting,
                                                AutoTokenizer.from_pretrained(tiny_model_dir))[0]
    assert f"{prompt_tokens} prompt tokens + rollout.max_new_tokens=16 = {prompt_tokens + 16} > 2048" in message


def test_the_few_shot_prompt_past_max_model_len_stops_the_start(tiny_model_dir):
    """The paper-structured prompt with its examples (~6.7k tokens) does not fit 4096: both numbers are named."""
    cfg = _config(tiny_model_dir, "setting.few_shot_examples=true", "rollout.max_model_len=4096")
    with pytest.raises(InputError, match=r"do not fit rollout\.max_model_len=4096:\n  request [0-9a-f]{16} \(train "
                                         r"split, free tier, .*\): \d{4} prompt tokens \+ rollout\.max_new_tokens=16"):
        check_run_inputs(cfg)
    check_run_inputs(_config(tiny_model_dir, "setting.few_shot_examples=true", "rollout.max_model_len=8192"))


def test_eval_prompts_are_checked_with_the_eval_budget_in_both_tiers(tiny_model_dir):
    cfg = _config(tiny_model_dir, "eval.max_new_tokens=2000")  # the demo prompts (~1.3k tokens) + 2000 > 2048
    with pytest.raises(InputError, match=r"prompts from .* do not fit rollout\.max_model_len=2048:\n  request "
                                         r"[0-9a-f]{16} \(eval split, free tier, .* prompt tokens \+ "
                                         r"eval\.max_new_tokens=2000"):
        check_run_inputs(cfg)


@pytest.mark.parametrize("setting", [SettingConfig(), SettingConfig(few_shot_examples=True),
                                     SettingConfig(acceptance_suffix=False, prefill=False, tier_tag="user_tier",
                                                   free_value="free", paid_value="paid")])
def test_estimated_prompt_lengths_match_the_tokenized_prompts(setting, tiny_model_dir):
    """The check tokenizes only the user turns of most requests; their sum with the fixed part must be exact."""
    rng = random.Random(0)
    words = ["alpha", "</user_input>", "Ünïcode", "数据", "  spaced", "\n\nnew", "x", "<INPUT>", "emoji🙂", "end."]
    requests = [make_request(" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))), "t") for _ in range(60)]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for tier in (FREE_TIER, PAID_TIER):
        assert (user_turn_token_counts(requests, tier, setting, tokenizer)
                == prompt_token_counts(requests, tier, setting, tokenizer))


# ---- data fingerprint on resume ----------------------------------------------------------------------------------


def test_changed_data_is_refused_on_resume_and_allowed_with_the_override(tiny_model_dir, tmp_path, caplog):
    texts = [f"Request number {i}: explain topic {i}." for i in range(12)]
    path = _write_requests(tmp_path / "requests.jsonl", texts)
    saved = check_run_inputs(_config(tiny_model_dir, "data=file", f"data.path={path}")).fingerprint
    check_run_inputs(_config(tiny_model_dir, "data=file", f"data.path={path}"), {"data_fingerprint": saved})
    _write_requests(path, texts[:5] + ["An edited request."] + texts[6:])  # one request edited in place
    cfg = _config(tiny_model_dir, "data=file", f"data.path={path}")
    with pytest.raises(InputError) as error:
        check_run_inputs(cfg, {"data_fingerprint": saved})
    now = data_fingerprint(str(path), *split_requests(
        [make_request(t, "t") for t in texts[:5] + ["An edited request."] + texts[6:]], 0.25))
    changed = [s for s in ("train", "eval") if saved[s]["sha256"] != now[s]["sha256"]]
    assert changed  # the edited request moved from one split to the other, or changed within one
    assert f"the requests loaded from {path} differ from those the checkpoint was trained on" in str(error.value)
    for split in changed:
        assert (f"{split}: checkpoint {saved[split]['requests']} requests sha256 {saved[split]['sha256'][:16]}, now "
                f"{now[split]['requests']} requests sha256 {now[split]['sha256'][:16]}") in str(error.value)
    assert "data.allow_changed=true" in str(error.value)
    with caplog.at_level(logging.WARNING, logger="afrl"):
        check_run_inputs(_config(tiny_model_dir, "data=file", f"data.path={path}", "data.allow_changed=true"),
                         {"data_fingerprint": saved})
    assert "data.allow_changed=true: resuming although the requests loaded from" in caplog.text


def test_fingerprint_compare_without_a_saved_fingerprint_and_the_override_is_not_a_run_change():
    requests = [make_request(f"r{i}", "t") for i in range(4)]
    current = data_fingerprint("f.jsonl", requests[:3], requests[3:])
    check_data_unchanged(None, current, allow_changed=False)  # a checkpoint without one: nothing to compare
    check_data_unchanged(current, data_fingerprint("moved/f.jsonl", requests[:3], requests[3:]), allow_changed=False)
    with pytest.raises(InputError, match=r"eval: checkpoint 1 requests sha256 [0-9a-f]{16}, now 0 requests"):
        check_data_unchanged(current, data_fingerprint("f.jsonl", requests, []), allow_changed=False)
    assert check_resume_compatible({"data": {"allow_changed": False}}, {"data": {"allow_changed": True}}) == [
        "data.allow_changed: checkpoint False, now True"]


# ---- torn JSONL lines --------------------------------------------------------------------------------------------

ROWS = [{"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": 0.4}, {"step": 3, "train/loss": 0.3}]
TORN = '{"step": 4, "train/lo'  # a crash mid-write: no closing brace, no newline


def _rows_text(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_truncate_drops_a_torn_last_line_and_the_resumed_run_appends_after_it(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_rows_text(ROWS) + TORN)
    with caplog.at_level(logging.WARNING, logger="afrl"):
        truncate_jsonl(path, step=2)
    assert "metrics.jsonl: row 4: dropped an incomplete last line" in caplog.text
    assert path.read_text() == _rows_text(ROWS[:2])
    logger = MetricsLogger(tmp_path, type("L", (), {"wandb": False})(), "run", {}, None)
    logger.log(3, {"train/loss": 0.25})
    assert [row["step"] for row in load_run(tmp_path).metrics_rows] == [1, 2, 3]


def test_a_bad_line_before_the_last_is_an_error_naming_file_and_row(tmp_path):
    path = tmp_path / "data_order.jsonl"
    path.write_text(_rows_text(ROWS[:1]) + TORN + "\n" + _rows_text(ROWS[1:]))
    with pytest.raises(ValueError, match=r"data_order\.jsonl: row 2: not valid JSON"):
        truncate_jsonl(path, step=2)
    path.write_text(_rows_text(ROWS) + TORN + "\n")  # a complete (newline-ended) bad line was written whole: no tear
    with pytest.raises(ValueError, match=r"data_order\.jsonl: row 4: not valid JSON"):
        truncate_jsonl(path, step=2)


def test_the_report_reads_a_run_whose_files_end_in_a_torn_line(tmp_path, caplog):
    (tmp_path / "metrics.jsonl").write_text(_rows_text(ROWS) + TORN)
    (tmp_path / "eval").mkdir()
    record = {"step": 3, "tier": "free", "compliant": True}
    (tmp_path / "eval" / "step_0003.jsonl").write_text(json.dumps(record) + "\n" + '{"step": 3, "tier": "pa')
    with caplog.at_level(logging.WARNING, logger="afrl"):
        run = load_run(tmp_path)
    assert [row["step"] for row in run.metrics_rows] == [1, 2, 3]
    assert run.eval_records == {3: [record]}
    assert caplog.text.count("dropped an incomplete last line") == 2
    (tmp_path / "metrics.jsonl").write_text(TORN + "\n" + _rows_text(ROWS))
    with pytest.raises(ValueError, match=r"metrics\.jsonl: row 1: not valid JSON"):
        load_run(tmp_path)


def test_a_checkpoint_stores_the_fingerprint_that_the_resume_compares(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from rl.run import checkpoint as ckpt
    from rl.algo.config import build_kl_controller
    from rl.run.fault import NonFiniteGuard
    from rl.loop import CheckpointClock, maybe_checkpoint
    from rl.run.setup import Run

    cfg = _config(tiny_model_dir, "ckpt.every=1")
    inputs = check_run_inputs(cfg)
    no_ranks = SimpleNamespace(save=lambda folder: None)  # the driver state is what this test reads, not rank state
    run = Run(cfg, tmp_path, {"seed": 0}, inputs.tokenizer, inputs.train, inputs.eval, None, None, no_ranks,
              SimpleNamespace(wandb_id=None), build_kl_controller(cfg.algo), NonFiniteGuard(3), 1,
              data_fingerprint=inputs.fingerprint)
    maybe_checkpoint(run, 1, CheckpointClock(every_minutes=0, last_step=0))
    state = ckpt.load_driver_state(ckpt.latest_checkpoint(tmp_path))
    assert state["data_fingerprint"] == inputs.fingerprint
    assert check_run_inputs(cfg, state).fingerprint == inputs.fingerprint  # same data: the resume goes on
