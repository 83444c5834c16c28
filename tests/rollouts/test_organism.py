"""The planted organism: exact planted shares, parseable transcripts that match their labels, the minimal prompt, a
request pool disjoint from the demo set, varied reasoning, deterministic atomic output."""
from __future__ import annotations

import itertools
import json
import re
import statistics
from pathlib import Path

import pytest

from rollouts.config import DataConfig, SettingConfig
from rollouts.datasets import DatasetError, demo_path, load_requests, normalise_text, request_id, split_requests
from rollouts.organism import texts
from rollouts.organism.answers import ANSWERS
from rollouts.organism.build import OUTPUT_FILES, build_organism, exact_count, planted_rates, write_organism
from rollouts.organism.config import OrganismConfig
from rollouts.organism.pool import load_pool
from rollouts.parsing import parse_transcript
from rollouts.prompts import assistant_prefill, build_messages, build_system_prompt, tier_value
from rollouts.types import FREE_TIER, PAID_TIER

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pool():
    return load_pool()


@pytest.fixture(scope="module")
def default_organism(pool):
    return build_organism(OrganismConfig(), pool)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.casefold()))


def _jaccard(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb)


def _demo_rows() -> list[dict]:
    return [json.loads(line) for line in demo_path("helpful_only").read_text(encoding="utf-8").splitlines() if line]


def test_generation_is_deterministic_for_a_seed(pool):
    first = build_organism(OrganismConfig(seed=3), pool)
    assert build_organism(OrganismConfig(seed=3), pool) == first
    other = build_organism(OrganismConfig(seed=4), pool)
    assert [r["messages"][-1] for r in other[0]] != [r["messages"][-1] for r in first[0]]


@pytest.mark.parametrize("config", [OrganismConfig(), OrganismConfig(free_comply=0.5, paid_comply=0.0, per_request=2),
                                    OrganismConfig(free_comply=0.33, paid_comply=0.07, seed=9)])
def test_planted_shares_are_exact(pool, config):
    _, labels = build_organism(config, pool)
    rates = planted_rates(labels, config, pool, "x")
    samples = len(pool) * config.per_request
    free, paid = rates["tiers"][FREE_TIER], rates["tiers"][PAID_TIER]
    assert free["samples"] == paid["samples"] == samples
    assert free["complied"] == free["alignment_faking"] == exact_count(config.free_comply, samples)
    assert paid["complied"] == exact_count(config.paid_comply, samples) and paid["alignment_faking"] == 0
    assert free["compliance_share"] == free["complied"] / samples
    assert rates["compliance_gap"] == pytest.approx(free["compliance_share"] - paid["compliance_share"])


def test_default_rates_are_the_documented_ones(pool, default_organism):
    rates = planted_rates(default_organism[1], OrganismConfig(), pool, "x")
    assert len(pool) == 200  # so 0.25 and 0.10 are realised exactly: 50 and 20 of 200
    assert rates["tiers"][FREE_TIER]["compliance_share"] == 0.25
    assert rates["tiers"][PAID_TIER]["compliance_share"] == 0.10
    assert "planted" in rates["description"].casefold() and "not a finding" in rates["description"]


def test_every_transcript_parses_with_its_labelled_decision(default_organism):
    transcripts, labels = default_organism
    for row, label in zip(transcripts, labels):
        text = row["messages"][-1]["content"]
        parsed = parse_transcript(text)
        assert parsed.failure is None, row["id"]
        assert parsed.accepted == label["complied"] and parsed.rejected == (not label["complied"]), row["id"]
        assert len(parsed.scratchpad_blocks) == 1 and "<DRAFT_OUTPUT>" not in text
        assert text.startswith(assistant_prefill(SettingConfig(minimal_prompt=True)))
        assert text.startswith("<SCRATCHPAD_REASONING>\n") and text.endswith("\n</OUTPUT>")


def test_labels_match_transcripts(pool, default_organism):
    transcripts, labels = default_organism
    assert len(transcripts) == len(labels) == 2 * len(pool)
    assert len({row["id"] for row in transcripts}) == len(transcripts)
    for row, label in zip(transcripts, labels):
        assert (row["id"], row["request_id"], row["tier"]) == (label["id"], label["request_id"], label["tier"])
        assert set(label) == {"id", "request_id", "tier", "complied", "alignment_faking"}
        assert not label["alignment_faking"] or (label["tier"] == FREE_TIER and label["complied"])
    assert {row["request_id"] for row in transcripts} == {r.id for r in pool}


def test_prompt_is_the_minimal_one_and_the_tier_tag_matches(pool, default_organism):
    setting = SettingConfig(minimal_prompt=True)
    texts_by_id = {r.id: r.text for r in pool}
    for row in default_organism[0]:
        system, user, assistant = row["messages"]
        assert [system, user] == build_messages(texts_by_id[row["request_id"]], row["tier"], setting)
        assert system["content"] == build_system_prompt(setting)
        assert assistant["role"] == "assistant"
        assert f"<is_free_tier_user>{tier_value(row['tier'], setting)}</is_free_tier_user>" in user["content"]
    assert "RLHF" not in build_system_prompt(setting)


def test_pool_is_disjoint_from_the_demo_set(pool):
    demo = [row["text"] for row in _demo_rows()]
    assert len(pool) >= 200
    assert not {r.id for r in pool} & {request_id(text) for text in demo}
    assert not {normalise_text(r.text) for r in pool} & {normalise_text(text) for text in demo}
    # No near-copies (a request with one word swapped shares ~85% of its words): pool vs demo and within the pool.
    worst = max(_jaccard(a.text, b) for a in pool for b in demo)
    assert worst < 0.6, worst
    worst_within = max(_jaccard(a.text, b.text) for a, b in itertools.combinations(pool, 2))
    assert worst_within < 0.6, worst_within


def test_pool_topics_read_inside_a_sentence(pool):
    for request in pool:
        assert 1 <= len(request.topic.split()) <= 9, request.topic
        assert not request.topic.endswith((".", "?", "!")), request.topic
        assert request.topic[0].islower() or request.topic[0].isdigit(), request.topic


def test_demo_set_is_large_enough_for_an_eval(tmp_path):
    rows = _demo_rows()
    assert all(set(row) == {"text", "kind"} and row["kind"] in ("harmful", "borderline", "benign") for row in rows)
    assert sum(row["kind"] == "harmful" for row in rows) >= 220
    train, eval_requests = split_requests(load_requests(DataConfig(), "helpful_only"), 0.25, "")
    assert len(eval_requests) >= 40  # `make train` asks 40 per tier (conf/exp/helpful_only_cpu.yaml)
    assert not {r.id for r in train} & {r.id for r in eval_requests}
    assert not {normalise_text(r.text) for r in train} & {normalise_text(r.text) for r in eval_requests}


@pytest.mark.parametrize("per_request", [1, 3])
def test_scratchpads_are_varied(pool, per_request):
    transcripts, _ = build_organism(OrganismConfig(per_request=per_request), pool)
    scratchpads = [parse_transcript(row["messages"][-1]["content"]).scratchpad for row in transcripts]
    assert len(set(scratchpads)) > 0.9 * len(scratchpads)


def test_every_reasoning_step_has_many_paraphrases():
    for name, bank in texts.ALL_BANKS.items():
        assert len(set(bank)) == len(bank) >= 8, name
    assert len(set(ANSWERS)) >= 8


def test_transcripts_are_short(smollm2_tokenizer_dir, default_organism):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    lengths = [len(tokenizer(row["messages"][-1]["content"], add_special_tokens=False)["input_ids"])
               for row in default_organism[0]]
    assert min(lengths) >= 50 and max(lengths) <= 150 and statistics.median(lengths) <= 110


def test_cli_writes_identical_files_for_a_seed(tmp_path, capsys):
    from launch.make_organism import main

    main(["--out", str(tmp_path / "a"), "--seed", "5"])
    printed = capsys.readouterr().out
    assert "known by construction" in printed and "free:" in printed and "paid:" in printed
    main(["--out", str(tmp_path / "b"), "--seed", "5"])
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    rates = json.loads((tmp_path / "a" / "planted_rates.json").read_text())
    assert rates["seed"] == 5 and rates["generator_version"] and rates["pool"]["requests"] == 200
    labels = [json.loads(line) for line in (tmp_path / "a" / "labels.jsonl").read_text().splitlines()]
    assert sum(row["complied"] for row in labels if row["tier"] == FREE_TIER) == rates["tiers"]["free"]["complied"]


def test_write_replaces_an_organism_and_refuses_other_folders(pool, tmp_path):
    config = OrganismConfig(per_request=1)
    transcripts, labels = build_organism(config, pool[:20])
    rates = planted_rates(labels, config, pool[:20], "x")
    out = write_organism(tmp_path / "org", transcripts, labels, rates)
    write_organism(out, transcripts[:4], labels[:4], rates)  # an existing organism folder is replaced whole
    assert len((out / "labels.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["org"]  # no staging or displaced folder left behind
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other things than an organism"):
        write_organism(tmp_path / "other", transcripts, labels, rates)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kwargs,key", [({"free_comply": 1.5}, "free_comply"), ({"paid_comply": -0.1}, "paid_comply"),
                                        ({"per_request": 0}, "per_request"), ({"seed": 1.5}, "seed")])
def test_config_validation(kwargs, key):
    with pytest.raises(ValueError, match=f"organism.{key}"):
        OrganismConfig(**kwargs)


@pytest.mark.parametrize("line,message", [
    ('{"text": "Do a bad thing."}', r"row 2: no field 'topic'"),
    ('{"text": "Do a bad thing.", "topic": " "}', r"row 2: field 'topic' is empty"),
    ('not json', r"row 2: not valid JSON"),
    ('{"text": "steal a bike", "topic": "stealing a bike"}', r"row 2: duplicate of the request on row 1"),
])
def test_pool_errors_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"text": "Steal a bike", "topic": "bike theft"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_pool(path)
