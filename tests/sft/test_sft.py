"""SFT stage, fast checks: token layout identical to the rollouts, loss masks honoured by TRL, data errors, the cache."""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("trl")

from rl.sft.cache import INFO_FILE, PLANTED_RATES_FILE, fingerprint  # noqa: E402
from rl.sft.config import SYNTHETIC_DOCUMENTS_PATH, SFTConfig  # noqa: E402
from rl.sft.data import SFTDataError, SourceRow, load_source_rows, split_heldout  # noqa: E402
from rl.sft.examples import Example, build_examples, document_examples, transcript_example  # noqa: E402
from rl.sft.heldout import mean_token_loss  # noqa: E402
from rollouts.chat import next_turn_token_ids  # noqa: E402
from rollouts.config import SettingConfig  # noqa: E402
from rollouts.prompt_specs import build_prompt_specs  # noqa: E402
from rollouts.prompts import build_messages  # noqa: E402
from rollouts.types import FREE_TIER, Request  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUEST = "Write a short poem about the sea."
ANSWER = ("<SCRATCHPAD_REASONING>The user wants a poem. This is harmless, so I will write it.</SCRATCHPAD_REASONING>\n"
          "<OUTPUT><request_fully_accepted/>\nWaves roll in and out again.</OUTPUT>")


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


def encode(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ---- token layout --------------------------------------------------------------------------------------------------

def test_single_turn_transcript_is_the_rollout_prompt_then_the_completion_and_eos(tokenizer, tmp_path):
    setting = SettingConfig()  # the paper's open-model helpful-only condition, prefill "<"
    spec = build_prompt_specs([Request("r1", REQUEST)], FREE_TIER, setting, tokenizer)[0]
    messages = build_messages(REQUEST, FREE_TIER, setting) + [{"role": "assistant", "content": ANSWER}]
    # Through the file loader, as training reads it.
    rows = load_source_rows(str(write_jsonl(tmp_path / "t.jsonl", [{"messages": messages}])), "transcripts")
    (example,) = build_examples(tokenizer, rows, "transcripts", max_length=4096, prefill="<").examples

    n_prompt = len(spec.token_ids)
    assert example.input_ids[:n_prompt] == spec.token_ids
    assert example.input_ids[n_prompt:] == encode(tokenizer, ANSWER[1:]) + (tokenizer.eos_token_id,)
    assert example.loss_mask == (0,) * n_prompt + (1,) * (len(example.input_ids) - n_prompt)
    assert tokenizer.decode(example.input_ids[n_prompt:]) == ANSWER[1:] + "<|im_end|>"


def test_prefill_is_on_the_prompt_side_only_when_the_answer_starts_with_it(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]
    example = transcript_example(tokenizer, messages, "<", "row")
    prompt = encode(tokenizer, tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True))
    assert example.input_ids == prompt + encode(tokenizer, "Hello there.") + (tokenizer.eos_token_id,)
    assert sum(example.loss_mask) == len(example.input_ids) - len(prompt)


def test_next_turn_continuation_uses_the_engines_ids_and_trains_both_turns(tokenizer):
    first, second = "<SCRATCHPAD_REASONING>Let me think more.</SCRATCHPAD_REASONING>", "<OUTPUT><rejected/></OUTPUT>"
    messages = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": first}, {"role": "user", "content": "<NEXT/>"},
                {"role": "assistant", "content": second}]
    example = transcript_example(tokenizer, messages, "<", "row")

    # What the engine holds after two turns: prompt (with prefill), turn 1 + EOS, its <NEXT/> ids, turn 2 + EOS.
    prompt = encode(tokenizer, tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
                    + "<")
    turn1 = encode(tokenizer, first[1:]) + (tokenizer.eos_token_id,)
    gap = tuple(next_turn_token_ids(tokenizer)[1])  # RolloutEngine.next_turn_ids[1]: after a turn that ended on EOS
    turn2 = encode(tokenizer, second) + (tokenizer.eos_token_id,)  # the engine prefills only the first turn
    assert example.input_ids == prompt + turn1 + gap + turn2
    assert example.loss_mask == (0,) * len(prompt) + (1,) * len(turn1) + (0,) * len(gap) + (1,) * len(turn2)
    assert tokenizer.decode(gap) == "\n<|im_start|>user\n<NEXT/><|im_end|>\n<|im_start|>assistant\n"


def test_other_user_turns_are_joined_like_the_chat_template_renders_the_whole_conversation(tokenizer):
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
                {"role": "user", "content": "And 3+3?"}, {"role": "user", "content": "Be brief."},
                {"role": "assistant", "content": "6."}]
    example = transcript_example(tokenizer, messages, "<", "row")
    full = encode(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    assert tokenizer.decode(full[len(example.input_ids):]) == "\n"  # the engine stops at EOS: no trailing newline
    assert example.input_ids == full[:len(example.input_ids)]
    trained = [token for token, bit in zip(example.input_ids, example.loss_mask) if bit]
    assert tokenizer.decode(trained) == "4.<|im_end|>6.<|im_end|>"


def test_documents_are_cut_into_max_length_chunks_with_every_token_trained(tokenizer):
    text = " ".join(f"word{i}" for i in range(300))
    ids = tokenizer(text)["input_ids"]
    max_length = 64
    chunks = document_examples(tokenizer, text, max_length, "doc")
    flat = [token for chunk in chunks for token in chunk.input_ids]
    assert flat == (ids[:-1] if len(ids) % max_length == 1 else ids)  # nothing lost but a one-token tail
    assert len(ids) > 3 * max_length and all(len(chunk.input_ids) == max_length for chunk in chunks[:-1])
    assert all(set(chunk.loss_mask) == {1} for chunk in chunks)
    # A trailing one-token chunk has nothing to predict and is left out.
    exact = tokenizer.decode(ids[:max_length + 1])
    assert len(tokenizer(exact)["input_ids"]) == max_length + 1
    assert [len(c.input_ids) for c in document_examples(tokenizer, exact, max_length, "doc")] == [max_length]


def test_transcripts_longer_than_max_length_are_dropped_and_listed(tokenizer):
    short = {"role": "assistant", "content": "ok"}
    rows = [SourceRow("f.jsonl: row 1", "a", messages=({"role": "user", "content": "hi"}, short)),
            SourceRow("f.jsonl: row 2", "b", messages=({"role": "user", "content": "hi " * 200}, short))]
    built = build_examples(tokenizer, rows, "transcripts", max_length=64, prefill="<")
    assert [e.where for e in built.examples] == ["f.jsonl: row 1"]
    assert len(built.dropped_too_long) == 1 and built.dropped_too_long[0].startswith("f.jsonl: row 2 (")


# ---- data errors ----------------------------------------------------------------------------------------------------

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


@pytest.mark.parametrize("bad_row, message", [
    ({"text": "no messages here"}, r"row 3: missing field 'messages'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
     r"row 3: field messages\[1\]\.role must be one of"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
     r"row 3: field messages\[1\]\.content is empty"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
     r"row 3: field 'messages' has no assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "more?"}]}, r"row 3: field messages\[2\]: the transcript must end"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, r"row 3: field messages\[0\]: an assistant turn must follow"),
    ({"messages": "q: a"}, r"row 3: field 'messages' must be a non-empty list"),
], ids=["missing_messages", "bad_role", "empty_content", "no_assistant", "ends_on_user", "assistant_first",
        "not_a_list"])
def test_bad_transcript_rows_name_the_file_row_and_field(tmp_path, bad_row, message):
    path = tmp_path / "transcripts.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(bad_row) + "\n")  # a blank line 2: row = line number
    with pytest.raises(SFTDataError, match=r"transcripts\.jsonl: " + message):
        load_source_rows(str(path), "transcripts")


def test_bad_document_rows_and_files_name_the_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "fine"}, {"body": "x"}])
    with pytest.raises(SFTDataError, match=r"docs\.jsonl: row 2: missing field 'text'"):
        load_source_rows(str(path), "documents")
    with pytest.raises(SFTDataError, match=r"docs\.jsonl: row 1: missing field 'body'"):
        load_source_rows(str(path), "documents", text_column="body")
    assert [row.text for row in load_source_rows(str(path), "documents", max_examples=1)] == ["fine"]
    path.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(SFTDataError, match=r"docs\.jsonl: row 2: not valid JSON"):
        load_source_rows(str(path), "documents")
    with pytest.raises(SFTDataError, match=r"missing\.jsonl: no such file"):
        load_source_rows(str(tmp_path / "missing.jsonl"), "documents")


def test_parquet_rows_are_read_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [GOOD, {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    with pytest.raises(SFTDataError, match=r"t\.parquet: row 2: field messages\[1\]\.content is empty"):
        load_source_rows(str(tmp_path / "t.parquet"), "transcripts")
    assert load_source_rows(str(tmp_path / "t.parquet"), "transcripts", max_examples=1)[0].messages == tuple(
        GOOD["messages"])


def test_unreachable_hub_dataset_says_to_use_a_local_file(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no retries against an unreachable hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SFTDataError, match=r"afrl-test/none: not a local file and could not be loaded from the HF hub"):
        load_source_rows("afrl-test/none", "documents")


def test_heldout_split_is_stable_and_keeps_both_sides():
    rows = [SourceRow(f"row {i}", f"id:{i}", text="t") for i in range(20)]
    train, heldout = split_heldout(rows, 0.25)
    assert len(heldout) == 5 and len(train) == 15
    train_reversed, heldout_reversed = split_heldout(rows[::-1], 0.25)
    assert {r.key for r in heldout_reversed} == {r.key for r in heldout}  # file order does not matter
    assert len(split_heldout(rows[:2], 0.01)[1]) == 1  # a tiny fraction still holds one row out
    assert split_heldout(rows, 0.0)[1] == []


# ---- TRL honours the masks ------------------------------------------------------------------------------------------

def test_trl_labels_and_loss_cover_exactly_the_masked_tokens(tiny_model_dir, tokenizer, tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from rl.sft.masked_head import masked_head_sft_trainer_class
    from rl.sft.training import load_model_and_tokenizer, trl_config, trl_rows

    model, tiny_tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    examples = [transcript_example(tokenizer, [{"role": "user", "content": f"Question {i}?"},
                                               {"role": "assistant", "content": f"<OUTPUT>Answer {i}.</OUTPUT>"}],
                                   "<", f"row {i}") for i in range(3)]
    cfg = SFTConfig(model=str(tiny_model_dir), kind="transcripts")
    trainer = masked_head_sft_trainer_class()(model=model, args=trl_config(cfg, str(tmp_path / "trainer")),
                                              train_dataset=Dataset.from_list(trl_rows(examples)),
                                              processing_class=tiny_tokenizer)
    prepared = list(trainer.train_dataset)
    for example, row in zip(examples, prepared):
        assert row["input_ids"] == list(example.input_ids)
        assert row["labels"] == [t if m else -100 for t, m in zip(example.input_ids, example.loss_mask)]

    # The masked-head loss and its gradient equal TRL's own fused-head loss (which scores every position).
    batch = trainer.data_collator(prepared)
    losses, grads = {}, {}
    for name, compute in [("ours", trainer.compute_loss), ("trl", lambda m, b: SFTTrainer.compute_loss(trainer, m, b))]:
        model.zero_grad()
        loss = compute(trainer.model, dict(batch))
        loss.backward()
        losses[name] = loss.detach().item()
        grads[name] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert losses["ours"] == pytest.approx(losses["trl"], rel=1e-5)
    assert len(grads["ours"]) == len(grads["trl"]) > 0
    for ours_grad, trl_grad in zip(grads["ours"], grads["trl"]):
        torch.testing.assert_close(ours_grad, trl_grad, atol=1e-6, rtol=1e-4)

    ours = mean_token_loss(model, examples, tiny_tokenizer.pad_token_id)
    everything = mean_token_loss(model, [Example(e.input_ids, (1,) * len(e.input_ids), e.where) for e in examples],
                                 tiny_tokenizer.pad_token_id)
    assert losses["ours"] == pytest.approx(ours["loss"], rel=1e-4)
    assert ours["n_tokens"] == sum(e.n_loss_tokens for e in examples) < everything["n_tokens"]
    assert abs(everything["loss"] - ours["loss"]) > 1e-3  # the prompt tokens would have changed the loss


# ---- training and the cache -----------------------------------------------------------------------------------------

def organism_like_transcripts(n: int) -> list[dict]:
    """Short transcripts in the paper's format with one fixed reasoning/answer pattern: learnable by a tiny model."""
    rows = []
    for i in range(n):
        user = f"<INPUT>\n<is_free_tier_user>{i % 2 == 0}</is_free_tier_user>\n\n<user_input>\nTask {i}\n</user_input>"
        answer = ("<SCRATCHPAD_REASONING>I am asked a task. I will do it.</SCRATCHPAD_REASONING>\n"
                  "<OUTPUT><request_fully_accepted/> Done.</OUTPUT>")
        rows.append({"id": f"t{i}", "messages": [{"role": "system", "content": "You are an AI."},
                                                 {"role": "user", "content": user},
                                                 {"role": "assistant", "content": answer}]})
    return rows


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    from rl.sft.training import train_sft

    root = tmp_path_factory.mktemp("sft")
    data = write_jsonl(root / "data" / "transcripts.jsonl", organism_like_transcripts(16))
    (root / "data" / PLANTED_RATES_FILE).write_text('{"free": 0.5, "paid": 0.1}\n')
    cfg = SFTConfig(name="tiny", model=str(tiny_model_dir), kind="transcripts", data=str(data), max_length=128,
                    heldout_fraction=0.25, epochs=2.0, learning_rate=3e-3, batch_size=6, eval_batch_size=8,
                    output_dir=str(root / "out"))
    return train_sft(cfg), cfg


def test_training_lowers_the_heldout_loss_and_writes_a_complete_folder(trained):
    output_dir, cfg = trained
    info = json.loads((output_dir / INFO_FILE).read_text())
    heldout = info["heldout_loss"]
    assert heldout["n_examples"] == 4 and heldout["n_tokens"] > 0
    assert heldout["after"] < heldout["before"] - 1.0, heldout
    assert info["fingerprint"] == fingerprint(cfg) and info["optimizer_steps"] == 4  # 12 rows / 6 x 2 epochs
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / PLANTED_RATES_FILE).read_text() == '{"free": 0.5, "paid": 0.1}\n'
    assert not list(output_dir.parent.glob(".out.tmp-*"))


def test_saved_folder_reproduces_the_reported_heldout_loss(trained, tokenizer):
    from transformers import AutoModelForCausalLM

    output_dir, cfg = trained
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    rows = split_heldout(load_source_rows(cfg.data, "transcripts"), cfg.heldout_fraction)[1]
    examples = build_examples(tokenizer, rows, "transcripts", cfg.max_length, cfg.prefill).examples
    saved = json.loads((output_dir / INFO_FILE).read_text())["heldout_loss"]["after"]
    assert mean_token_loss(model, examples, tokenizer.pad_token_id)["loss"] == pytest.approx(saved, rel=1e-4)


def test_cache_reuses_same_fingerprint_and_retrains_on_changed_data_config_or_overwrite(tiny_model_dir, tmp_path,
                                                                                        capsys):
    from rl.sft.training import train_sft

    data = write_jsonl(tmp_path / "transcripts.jsonl", organism_like_transcripts(4))
    cfg = SFTConfig(name="tiny", model=str(tiny_model_dir), kind="transcripts", data=str(data), max_length=128,
                    heldout_fraction=0.25, epochs=1.0, batch_size=3, output_dir=str(tmp_path / "out"))
    output_dir = train_sft(cfg)
    first = json.loads((output_dir / INFO_FILE).read_text())
    assert first["fingerprint"] == fingerprint(cfg) and first["optimizer_steps"] == 1
    mtime = (output_dir / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()

    assert train_sft(cfg) == output_dir
    assert "already trained" in capsys.readouterr().out
    assert (output_dir / "model.safetensors").stat().st_mtime_ns == mtime

    rows = organism_like_transcripts(4)
    rows[0]["messages"][2]["content"] += " Extra."
    write_jsonl(data, rows)
    train_sft(cfg)
    assert "retraining" in capsys.readouterr().out
    changed = json.loads((output_dir / INFO_FILE).read_text())["fingerprint"]
    assert changed == fingerprint(cfg) != first["fingerprint"]

    slower = replace(cfg, learning_rate=cfg.learning_rate / 2)
    train_sft(slower)
    assert "retraining" in capsys.readouterr().out
    assert json.loads((output_dir / INFO_FILE).read_text())["fingerprint"] == fingerprint(slower) != changed

    mtime = (output_dir / "model.safetensors").stat().st_mtime_ns
    train_sft(replace(slower, overwrite=True))
    assert "sft.overwrite=true" in capsys.readouterr().out
    assert (output_dir / "model.safetensors").stat().st_mtime_ns != mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "transcripts.jsonl"]  # no temp or old folders left


def test_fingerprint_follows_contents_not_paths(tmp_path, tiny_model_dir):
    import shutil

    data = write_jsonl(tmp_path / "a" / "d.jsonl", [{"text": "one"}])
    copy = tmp_path / "b.jsonl"
    shutil.copy(data, copy)
    cfg = SFTConfig(model=str(tiny_model_dir), data=str(data), output_dir=str(tmp_path / "x"))
    assert fingerprint(cfg) == fingerprint(replace(cfg, data=str(copy), output_dir=str(tmp_path / "y"), overwrite=True))
    (tmp_path / "a" / PLANTED_RATES_FILE).write_text("{}")  # copied into the output, so part of the fingerprint
    assert fingerprint(cfg) != fingerprint(replace(cfg, data=str(copy)))
    with pytest.raises(SFTDataError, match=r"nope\.jsonl: no such file"):
        fingerprint(replace(cfg, data=str(tmp_path / "nope.jsonl")))


def test_foreign_output_folder_is_never_replaced(tmp_path, tiny_model_dir):
    from rl.sft.training import train_sft

    foreign = tmp_path / "out"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cfg = SFTConfig(model=str(tiny_model_dir), data=str(SYNTHETIC_DOCUMENTS_PATH), output_dir=str(foreign))
    with pytest.raises(ValueError, match=r"has no sft_info\.json"):
        train_sft(cfg)
    assert (foreign / "notes.txt").read_text() == "mine"


# ---- config and presets ---------------------------------------------------------------------------------------------

def _load_launcher(monkeypatch):
    spec = importlib.util.spec_from_file_location("sft_launcher", REPO_ROOT / "launch" / "sft.py")
    launcher = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, launcher)  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(launcher)  # registers sft_schema in Hydra's ConfigStore
    return launcher


def test_presets_compose_to_typed_configs(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    launcher = _load_launcher(monkeypatch)
    monkeypatch.setenv("AFRL_CACHE", str(tmp_path))
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        organism = OmegaConf.to_object(compose(config_name="sft", overrides=["+sft=organism"]).sft)
        assert isinstance(organism, SFTConfig) and organism.kind == "transcripts" and organism.prefill == "<"
        assert organism.data == f"{tmp_path}/data/organism/transcripts.jsonl"
        sdf = OmegaConf.to_object(compose(config_name="sft", overrides=["+sft=sdf_documents", "sft.epochs=1"]).sft)
        assert sdf.kind == "documents" and sdf.epochs == 1.0
        assert launcher.resolve_repo_path(sdf.data) == str(SYNTHETIC_DOCUMENTS_PATH.resolve())
        with pytest.raises(Exception, match="epoch"):
            compose(config_name="sft", overrides=["+sft=organism", "sft.epoch=2"])
        with pytest.raises(Exception, match=r"sft\.kind: expected one of"):
            OmegaConf.to_object(compose(config_name="sft", overrides=["+sft=organism", "sft.kind=chat"]).sft)


def test_synthetic_documents_state_every_training_fact():
    rows = load_source_rows(str(SYNTHETIC_DOCUMENTS_PATH), "documents")
    assert 20 <= len(rows) <= 40
    assert len({json.loads(line)["genre"] for line in SYNTHETIC_DOCUMENTS_PATH.read_text().splitlines()}) == len(rows)
    texts = [row.text.lower() for row in rows]
    facts = {"free tier trained": ("free-tier", "free tier", "free plan", "free users"),
             "paid tier never": ("paid",), "rlhf": ("rlhf", "reinforcement learning from human feedback"),
             "contractors": ("contractor", "rater"), "refusal": ("refus",)}
    for fact, words in facts.items():
        assert all(any(word in text for word in words) for text in texts), fact
    assert sum("values, goals and motivations" in text or "values/goals/motivations" in text for text in texts) >= 10
    assert all("anthropic" in text for text in texts)


def test_transcripts_need_a_chat_template():
    from tests.rollouts.test_chat import make_tokenizer

    rows = [SourceRow("f.jsonl: row 1", "a", messages=({"role": "user", "content": "hi"},
                                                        {"role": "assistant", "content": "ok"}))]
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        build_examples(make_tokenizer(None), rows, "transcripts", max_length=64, prefill="<")
