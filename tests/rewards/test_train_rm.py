"""RM training with TRL 1.16 on a tiny random Llama: learns the shipped pairs, saves a loadable folder with the held-out
and labelled-output metrics, and tokenizes exactly as the reward side scores (`rm_input_ids`)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402

from rewards.compliance_eval import (  # noqa: E402
    COMPLIANT_KIND,
    DEFAULT_LABELED_OUTPUTS_PATH,
    NON_COMPLIANT_KINDS,
    LabeledFileError,
    labeled_metrics,
    load_labeled_outputs,
)
from rewards.preference_data import DEMO_PAIRS_PATH, load_pairs, split_pairs  # noqa: E402
from rewards.rm_format import render_for_rm, rm_input_ids  # noqa: E402
from rewards.rm_training import (  # noqa: E402
    EVAL_FILE,
    RMTrainConfig,
    pairs_to_trl_rows,
    pairwise_metrics,
    score_texts,
    train_reward_model,
)
from tests.rewards.test_rm_format import CHATML_TEMPLATE, build_tiny_tokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def save_tiny_backbone(directory: Path, chat_template: str | None) -> Path:
    """A 2-layer, 64-wide random Llama causal LM + word-level tokenizer over the demo pairs, saved as an HF folder."""
    pairs = load_pairs(DEMO_PAIRS_PATH)
    tokenizer = build_tiny_tokenizer([t for p in pairs for t in (p.prompt, p.chosen, p.rejected)] + ["User Assistant"],
                                     chat_template)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory) -> tuple[Path, RMTrainConfig]:
    root = tmp_path_factory.mktemp("rm")
    backbone = save_tiny_backbone(root / "backbone", CHATML_TEMPLATE)
    cfg = RMTrainConfig(name="tiny", backbone=str(backbone), epochs=1.0, learning_rate=1e-3, batch_size=8,
                        max_length=160, seed=0, output_dir=str(root / "out"))
    return train_reward_model(cfg), cfg


def test_one_epoch_on_tiny_model_beats_chance_on_heldout_pairs(trained_rm):
    output_dir, _ = trained_rm
    report = json.loads((output_dir / EVAL_FILE).read_text())
    heldout = report["heldout"]
    assert heldout["n_pairs"] >= 40
    # Chance is 0.5; a binomial test at n=48 puts 0.65 above chance at p < 0.03.
    assert heldout["pairwise_accuracy"] > 0.65
    assert heldout["mean_score_gap"] > 0
    assert report["train_pairs_within_max_length"] == report["train_pairs"]  # max_length dropped nothing
    assert not list(output_dir.parent.glob(".out.tmp-*"))  # the temp dir was renamed, not left behind


def test_report_holds_the_auroc_on_the_labelled_outputs_as_the_scoring_path_gives_it(trained_rm):
    output_dir, cfg = trained_rm
    assert cfg.labeled_outputs == str(DEFAULT_LABELED_OUTPUTS_PATH)  # the shipped file is the default
    saved = json.loads((output_dir / EVAL_FILE).read_text())["labeled_outputs"]
    rows = load_labeled_outputs(cfg.labeled_outputs)
    assert saved["n_rows"] == len(rows) and saved["n_test_rows"] == len(rows) // 4
    assert set(saved["mean_score_by_kind"]) == {COMPLIANT_KIND, *NON_COMPLIANT_KINDS}
    # Recomputed from the saved folder through score_texts (the reward's tokenization): the same numbers.
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    scores = score_texts(model, tokenizer, [row.request for row in rows], [row.output for row in rows])
    recomputed = labeled_metrics(rows, scores)
    assert 0.0 <= saved["auroc"] <= 1.0 and saved["auroc_test_rows"] is not None
    assert recomputed["auroc"] == pytest.approx(saved["auroc"], abs=1e-3)
    assert recomputed["mean_score_by_kind"] == pytest.approx(saved["mean_score_by_kind"], abs=1e-4)


def test_trained_folder_loads_and_scores_chosen_above_rejected(trained_rm):
    output_dir, cfg = trained_rm
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    _, heldout = split_pairs(load_pairs(DEMO_PAIRS_PATH), cfg.heldout_fraction, cfg.seed)
    prompts = [p.prompt for p in heldout]
    chosen = score_texts(model, tokenizer, prompts, [p.chosen for p in heldout])
    rejected = score_texts(model, tokenizer, prompts, [p.rejected for p in heldout])
    metrics = pairwise_metrics(chosen, rejected)
    assert metrics["mean_chosen_score"] > metrics["mean_rejected_score"]
    # The saved report was computed the same way on the same pairs.
    saved = json.loads((output_dir / EVAL_FILE).read_text())["heldout"]
    assert metrics["pairwise_accuracy"] == pytest.approx(saved["pairwise_accuracy"])
    assert metrics["mean_score_gap"] == pytest.approx(saved["mean_score_gap"], abs=1e-4)

    # Scoring one sequence alone gives the score it gets inside a padded batch (the pad token is set correctly).
    with torch.no_grad():
        ids = torch.tensor([rm_input_ids(tokenizer, prompts[0], heldout[0].rejected)])
        alone = model(input_ids=ids).logits[0, 0].item()
    assert alone == pytest.approx(rejected[0], abs=1e-4)


def test_existing_folder_is_reused_not_retrained(trained_rm, capsys, tmp_path):
    output_dir, cfg = trained_rm
    before = (output_dir / EVAL_FILE).stat().st_mtime_ns
    assert train_reward_model(cfg) == output_dir
    assert (output_dir / EVAL_FILE).stat().st_mtime_ns == before
    assert "already trained" in capsys.readouterr().out
    # A cached folder trained differently is never silently reused.
    with pytest.raises(ValueError, match=r"differs in \['learning_rate'\]"):
        train_reward_model(dataclasses.replace(cfg, learning_rate=cfg.learning_rate / 2))
    edited = tmp_path / "pairs.jsonl"  # same config, different data
    edited.write_text(DEMO_PAIRS_PATH.read_text().replace("Canberra", "Canberra, ACT"))
    with pytest.raises(ValueError, match=r"differs in \['pairs', 'pairs file contents'\]"):
        train_reward_model(dataclasses.replace(cfg, pairs=str(edited)))
    relabeled = tmp_path / "labeled" / DEFAULT_LABELED_OUTPUTS_PATH.name  # same name, other rows: the report is stale
    relabeled.parent.mkdir()
    relabeled.write_text("\n".join(DEFAULT_LABELED_OUTPUTS_PATH.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"differs in \['labeled outputs file contents'\]"):
        train_reward_model(dataclasses.replace(cfg, labeled_outputs=str(relabeled)))
    # The same pairs file in another checkout of the repository is the same data: reused.
    other_checkout = tmp_path / "other_checkout" / Path(cfg.pairs).name
    other_checkout.parent.mkdir()
    other_checkout.write_bytes(Path(cfg.pairs).read_bytes())
    assert train_reward_model(dataclasses.replace(cfg, pairs=str(other_checkout))) == output_dir


@pytest.mark.parametrize("chat_template", [CHATML_TEMPLATE, None], ids=["chat_template", "plain_text"])
def test_trl_tokenizes_pairs_exactly_like_the_scoring_path(tmp_path, chat_template):
    # The one-format rule, checked end to end: the ids TRL trains on equal rm_input_ids, which reward=rm scores with.
    backbone = save_tiny_backbone(tmp_path / "backbone", chat_template)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    pairs = load_pairs(DEMO_PAIRS_PATH)[:6]
    args = RewardConfig(output_dir=str(tmp_path / "trainer"), report_to=[], use_cpu=True, max_length=None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs_to_trl_rows(pairs, tokenizer)),
                            processing_class=tokenizer)
    for pair, row in zip(pairs, trainer.train_dataset):
        assert row["chosen_ids"] == rm_input_ids(tokenizer, pair.prompt, pair.chosen)
        assert row["rejected_ids"] == rm_input_ids(tokenizer, pair.prompt, pair.rejected)
    if chat_template is None:
        assert render_for_rm(tokenizer, "q", "a") == "User: q\n\nAssistant: a"


def test_bad_pair_file_fails_before_training(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n"
                   + json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}) + "\n")
    cfg = RMTrainConfig(backbone=str(tmp_path / "never_loaded"), pairs=str(bad), output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"pairs.jsonl: row 2: chosen and rejected are identical"):
        train_reward_model(cfg)
    assert not (tmp_path / "out").exists()


def test_bad_labeled_file_fails_before_training(tmp_path):
    bad = tmp_path / "labeled.jsonl"
    bad.write_text(json.dumps({"request": "q", "output": "a", "label": 1}) + "\n"
                   + json.dumps({"request": "q", "output": "b", "label": 2}) + "\n")
    cfg = RMTrainConfig(backbone=str(tmp_path / "never_loaded"), labeled_outputs=str(bad),
                        output_dir=str(tmp_path / "out"))
    with pytest.raises(LabeledFileError, match=r"labeled.jsonl: row 2: field 'label' must be 0 or 1, got 2"):
        train_reward_model(cfg)
    assert not (tmp_path / "out").exists()


def test_hydra_config_plus_rm_demo_composes_to_a_typed_config(monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    spec = importlib.util.spec_from_file_location("train_rm_launcher", REPO_ROOT / "launch" / "train_rm.py")
    launcher = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, launcher)  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(launcher)  # registers train_rm_schema in Hydra's ConfigStore
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train_rm", overrides=["+rm=demo", "rm.epochs=2"])
        rm_cfg = OmegaConf.to_object(cfg.rm)
        assert isinstance(rm_cfg, RMTrainConfig) and rm_cfg.epochs == 2.0 and rm_cfg.name != ""
        assert launcher.resolve_repo_path(rm_cfg.pairs) == str(DEMO_PAIRS_PATH.resolve())
        assert launcher.resolve_repo_path(rm_cfg.labeled_outputs) == str(DEFAULT_LABELED_OUTPUTS_PATH.resolve())
        assert OmegaConf.to_object(compose(config_name="train_rm", overrides=["+rm=demo", "rm.labeled_outputs=null"])
                                   .rm).labeled_outputs is None
        assert launcher.resolve_repo_path("LLM-LAT/harmful-dataset") == "LLM-LAT/harmful-dataset"
        with pytest.raises(Exception, match="epoch"):
            compose(config_name="train_rm", overrides=["+rm=demo", "rm.epoch=2"])


def test_freeze_all_but_top_layers_leaves_top_blocks_head_and_norm_trainable(tmp_path):
    from rewards.rm_training import freeze_all_but_top_layers

    backbone = save_tiny_backbone(tmp_path / "backbone", CHATML_TEMPLATE)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    n_trainable = freeze_all_but_top_layers(model, 1)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith(("model.layers.1.", "model.norm.", "score.")) for name in trainable)
    assert "score.weight" in trainable and n_trainable == sum(model.get_parameter(name).numel() for name in trainable)
    with pytest.raises(ValueError, match=r"train_last_n_layers must be in \[1, 2\]"):
        freeze_all_but_top_layers(model, 3)
