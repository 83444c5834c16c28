"""Config composition and validation: the shipped experiments compose; bad input fails with the key's name."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from rl.config import TrainConfig, load_config, register_schema
from rollouts.config import DataConfig
from rollouts.config_check import ConfigError
from rollouts.datasets import DatasetError, load_requests
from tests.train_runs import HANG_GUARD_S, REPO, TRAIN

register_schema()


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("exp", ["helpful_only", "helpful_only_cpu", "helpful_only_sdf", "smoke", "animal_welfare"])
def test_shipped_experiments_compose_and_validate(exp, tiny_model_dir):
    # experiments whose reward uses a reward model need an HF folder there (validated); the tiny model stands in.
    # The paper-sized ones refuse the demo set (data.allow_demo=false): allowed here, where only the config is checked.
    extra = [f"reward.rm.model_path={tiny_model_dir}"] if exp != "smoke" else []
    if exp in PAPER_SIZED:
        extra.append("data.allow_demo=true")
    cfg = load_config(_compose(f"+exp={exp}", f"model.path={tiny_model_dir}", *extra))
    assert cfg.exp_name == exp
    assert cfg.samples_per_step % cfg.trainer.world_size == 0


PAPER_SIZED = ("helpful_only", "helpful_only_sdf", "animal_welfare")


@pytest.mark.parametrize("exp", PAPER_SIZED)
def test_paper_sized_experiments_run_ppo_against_a_reward_model_on_real_data(exp, tiny_model_dir):
    cfg = load_config(_compose(f"+exp={exp}", f"model.path={tiny_model_dir}", f"reward.rm.model_path={tiny_model_dir}",
                               "data=file", f"data.path={REPO / 'rollouts' / 'demo_data' / 'helpful_only.jsonl'}",
                               "data.text_column=text"))
    assert (cfg.algo.name, cfg.algo.advantage, cfg.algo.kl_in) == ("ppo", "gae", "reward")
    assert "rm" in cfg.reward.used_components and not cfg.data.allow_demo


def test_helpful_only_evals_the_no_scratchpad_gap_at_every_eval_and_the_cpu_organism_keeps_its_recipe(tiny_model_dir):
    paper = load_config(_compose("+exp=helpful_only", f"model.path={tiny_model_dir}",
                                 f"reward.rm.model_path={tiny_model_dir}", "data.allow_demo=true"))
    assert paper.eval.variants == ["no_scratchpad"] and paper.eval.variants_every == paper.eval.every == 10
    cpu = load_config(_compose("+exp=helpful_only_cpu", f"model.path={tiny_model_dir}",
                               f"reward.rm.model_path={tiny_model_dir}"))
    assert (cpu.algo.name, cpu.eval.variants, cpu.data.source, cpu.data.allow_demo) == ("grpo", [], "demo", True)


def test_a_paper_sized_run_without_real_data_or_its_reward_model_stops_naming_both(tiny_model_dir, tmp_path):
    missing_rm = tmp_path / "reward_models" / "helpful-harmful-dataset"
    with pytest.raises(ConfigError) as error:
        load_config(_compose("+exp=helpful_only", f"model.path={tiny_model_dir}", f"reward.rm.model_path={missing_rm}"))
    message = str(error.value)
    assert message.startswith("helpful_only cannot start:")
    assert re.search(r"data\.source=demo with data\.allow_demo=false: .* gives \d+ training requests, which "
                     r"total_steps=150 x rollout\.prompts_per_step=16 would pass over \d+ times", message)
    assert "data=advbench data.path=<AdvBench harmful_behaviors.csv>" in message and "data=hf" in message
    assert f"python launch/train_rm.py +rm=harmful_dataset rm.output_dir={missing_rm}" in message
    other_rm = tmp_path / "my-rm"  # no preset writes this name: the command trains on the user's own pairs
    with pytest.raises(ConfigError,
                       match=rf"rm\.pairs=<your prompt/chosen/rejected \.jsonl> .*rm\.output_dir={other_rm}"):
        load_config(_compose("+exp=animal_welfare", f"model.path={tiny_model_dir}", f"reward.rm.model_path={other_rm}",
                             "data.allow_demo=true"))


def _redundant_keys(node: dict, defaults: dict, where: str) -> list[str]:
    """Keys of a YAML mapping that are no schema field or only repeat the schema's default (both unresolved)."""
    found = []
    for key, value in node.items():
        if key in ("defaults", "hydra"):
            continue
        if key not in defaults:
            found.append(f"{where}{key} (no such field)")
        elif "???" in (value, defaults[key]):
            continue  # a required value, not a repeat
        elif isinstance(value, dict) and isinstance(defaults[key], dict):
            found += _redundant_keys(value, defaults[key], f"{where}{key}.")
        elif value == defaults[key] and isinstance(value, bool) == isinstance(defaults[key], bool):
            found.append(f"{where}{key}")
    return found


def test_conf_files_hold_only_what_differs_from_the_dataclass_defaults():
    from rewards.rm_training import RMTrainConfig
    from rl.bench.config import BenchConfig
    from rl.sft.config import SFTConfig

    train, bench = OmegaConf.structured(TrainConfig), OmegaConf.structured(BenchConfig)
    schemas = {"sft": OmegaConf.structured(SFTConfig), "rm": OmegaConf.structured(RMTrainConfig)}
    repeated = []
    for path in sorted((REPO / "conf").rglob("*.yaml")):
        parts = path.relative_to(REPO / "conf").parts
        if parts[0] in ("exp", "launcher"):  # experiments override on purpose; launchers configure Hydra itself
            continue
        if parts[0] == "bench":
            defaults = bench if len(parts) == 2 else bench[parts[1]]
        elif len(parts) == 1:
            defaults = train if path.name == "config.yaml" else OmegaConf.create({})
        else:
            defaults = schemas.get(parts[0]) or train[parts[0]]
        node = OmegaConf.to_container(OmegaConf.load(path)) or {}
        defaults = OmegaConf.to_container(defaults)
        repeated += [f"{path.relative_to(REPO)}: {key}" for key in _redundant_keys(node, defaults, "")]
    assert repeated == [], "YAML values that repeat the dataclass default (or are no field): " + ", ".join(repeated)


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ConfigCompositionException) as err:
        _compose("rollout.n_sampels=4")
    assert "n_sampels" in str(err.value.__cause__ or err.value)


def test_missing_model_path_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.path: no HF model folder at .*nowhere"):
        load_config(_compose(f"model.path={tmp_path / 'nowhere'}"))


@pytest.mark.parametrize("override, key", [
    ("rollout.prompts_per_step=0", "rollout.prompts_per_step"),
    ("rollout.temperature=0", "rollout.temperature"),
    ("rollout.block_size=0", "rollout.block_size"),
    ("trainer.world_size=3", "trainer.world_size"),
    ("algo.group_size=1", "algo.group_size"),
    ("eval.variants=[no_such_variant]", "eval.variants"),
])
def test_bad_values_name_the_key(override, key, tiny_model_dir):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(_compose(override, f"model.path={tiny_model_dir}"))


@pytest.mark.parametrize("key", ["rollout.sync_timeout_s", "fault.step_timeout_s", "resources.placement_timeout_s"])
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "1e9"])
def test_timeouts_must_be_finite_positive_and_below_a_week(key, value, tiny_model_dir):
    with pytest.raises(ValueError, match=rf"{key.replace('.', r'[.]')}: expected a finite number of seconds > 0 and "
                                         r"<= 604800 \(7 days\), got"):
        load_config(_compose(f"{key}={value}", f"model.path={tiny_model_dir}"))


@pytest.mark.parametrize("override, message", [
    ("fault.max_restarts=1000", r"fault\.max_restarts: expected an int in \[0, 100\], got 1000"),
    ("fault.max_nonfinite_steps=100000", r"fault\.max_nonfinite_steps: expected an int in \[1, 1000\], got 100000"),
    ("rollout.max_turns=1000", r"rollout\.max_turns: expected an int in \[1, 64\], got 1000"),
    ("rollout.max_new_tokens=4096", r"rollout\.max_new_tokens: expected an int in \[1, 4095\], got 4096"),
    ("eval.max_new_tokens=5000", r"eval\.max_new_tokens: expected an int in \[1, 4095\], got 5000"),
    ("rollout.max_model_len=10000000", r"rollout\.max_model_len: expected an int in \[2, 1048576\], got 10000000"),
    ("data.eval_fraction=1.0", r"data\.eval_fraction: expected a share in \[0, 1\) .*got 1\.0"),
])
def test_counts_are_bounded(override, message, tiny_model_dir):
    with pytest.raises(ValueError, match=message):
        load_config(_compose(override, f"model.path={tiny_model_dir}"))


def test_dry_run_loads_the_data_and_prints_the_split(tiny_model_dir, tmp_path):
    result = subprocess.run([sys.executable, str(TRAIN), "+exp=smoke", f"model.path={tiny_model_dir}", "dry_run=true",
                             f"run_dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[afrl] dry run: config valid, data " in result.stdout
    assert " train / " in result.stdout and " eval requests (disjoint by id); " in result.stdout
    assert re.search(r"; \d+\.\d\d passes over the training split in the run; longest prompt \d+ tokens", result.stdout)


def test_dry_run_fails_on_a_broken_data_file(tiny_model_dir, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_bytes("goal,target\nExplain tides.,x\nCaf\u00e9 menu ideas,y\n".encode("latin-1"))
    result = subprocess.run([sys.executable, str(TRAIN), "+exp=smoke", f"model.path={tiny_model_dir}", "dry_run=true",
                             "data=file", f"data.path={path}", f"run_dir={tmp_path / 'run'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode != 0
    assert f"{path}: line 3 (byte offset 32): byte 0xe9 is not UTF-8" in result.stderr, result.stderr[-3000:]
    assert "dry run: config valid" not in result.stdout


def test_dataset_row_without_text_names_file_and_row(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"goal": "Explain photosynthesis."}) + "\n" + json.dumps({"goal": "  "}) + "\n")
    with pytest.raises(DatasetError, match=r"requests\.jsonl.*(row|line) 2"):
        load_requests(DataConfig(source="file", path=str(path), text_column="goal"), "helpful_only")


def test_cli_reports_an_unknown_key_and_exits_nonzero():
    result = subprocess.run([sys.executable, str(TRAIN), "+exp=smoke", "algo.klcoef=0.1"], cwd=REPO,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode != 0
    assert "klcoef" in result.stderr


def test_resolved_config_keeps_no_secret_values(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    cfg = _compose("reward=judge", f"model.path={tiny_model_dir}")
    dumped = OmegaConf.to_yaml(cfg, resolve=True)
    assert "OPENAI_API_KEY" in dumped and "sk-test-secret-value" not in dumped


def test_sweep_makes_one_run_folder_per_job_in_one_wandb_group(tiny_model_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(TRAIN), "-m", "+exp=smoke", f"model.path={tiny_model_dir}", "dry_run=true",
         "algo.kl_coef=0,0.05", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    infos = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/run_info.json"))]
    assert len(infos) == 4
    assert {i["wandb_group"] for i in infos} == {"smoke-sweep"}
    assert sorted((o[-2], o[-1]) for o in (i["overrides"] for i in infos)) == [
        ("algo.kl_coef=0", "seed=1"), ("algo.kl_coef=0", "seed=2"),
        ("algo.kl_coef=0.05", "seed=1"), ("algo.kl_coef=0.05", "seed=2"),
    ]


def test_placement_settings_are_checked_at_start_up(tiny_model_dir):
    cfg = load_config(_compose("resources.placement=colocated", "resources.engine_sleep=false",
                               f"model.path={tiny_model_dir}"))
    assert cfg.resources.placement == "colocated" and str(cfg.resources.engine_sleep).lower() == "false"
    for override, message in [("resources.placement=spread", "resources.placement"),
                              ("resources.engine_sleep=maybe", "resources.engine_sleep"),
                              ("resources.placement_timeout_s=0", "resources.placement_timeout_s")]:
        with pytest.raises(ConfigError, match=message):
            load_config(_compose(override, f"model.path={tiny_model_dir}"))


def test_run_info_records_the_system_prompt_files_hash(tiny_model_dir, tmp_path):
    """A run on the user's own prompt file (e.g. the paper's) records which text it was: its path and sha256."""
    import hashlib

    prompt = tmp_path / "paper_prompt.txt"
    prompt.write_text("The system prompt from the paper's released files.\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(TRAIN), "+exp=smoke", f"model.path={tiny_model_dir}", "dry_run=true",
         f"setting.system_prompt_file={prompt}", f"run_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["system_prompt_file"] == str(prompt)
    assert info["system_prompt_sha256"] == hashlib.sha256(prompt.read_bytes()).hexdigest()


def test_eval_variants_accept_the_app_j_controls(tiny_model_dir, tmp_path):
    names = ["paraphrase_1", "paraphrase_4", "cut_conflicting_criteria", "honesty", "cut_values_goals_motivations"]
    cfg = load_config(_compose(f"eval.variants=[{','.join(names)}]", f"model.path={tiny_model_dir}"))
    assert list(cfg.eval.variants) == names
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("A prompt of the user's own.", encoding="utf-8")
    with pytest.raises(ValueError, match=r"variant overrides \['paraphrase'\] change the project's own system prompt"):
        load_config(_compose("eval.variants=[paraphrase_1]", f"setting.system_prompt_file={prompt}",
                             f"model.path={tiny_model_dir}"))


@pytest.mark.parametrize("variant", ["cut_conflicting_criteria", "honesty", "no_rlhf_paragraph"])
def test_a_variant_that_renders_the_default_prompt_is_an_error(variant, tiny_model_dir):
    # the minimal prompt has no criteria, honesty or RLHF text to cut or add: the variant would measure the default twice
    with pytest.raises(ConfigError, match=rf"eval\.variants\[0\]: expected a variant that changes the prompt under "
                                          rf"this setting .*got '?{variant}"):
        load_config(_compose(f"eval.variants=[{variant}]", "setting.minimal_prompt=true",
                             f"model.path={tiny_model_dir}"))
    assert load_config(_compose(f"eval.variants=[{variant}]", f"model.path={tiny_model_dir}")).eval.variants == [variant]
