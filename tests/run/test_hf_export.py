"""HF model folders (rl/run/export.py, rl/run/hf_outputs.py) and the hub push (rl/run/hub.py) against a local stand-in
for the Hub (tests/hub_server.py): what is written, that it loads back equal, atomically, and where the token goes."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rl.config import TrainConfig, validate
from rl.run import checkpoint as ckpt
from rl.run.export import HF_FOLDER, SAFETENSORS_INDEX, write_hf_folder
from rl.run.hf_outputs import checkpoint_writer, push_final_folder, write_final_folder
from rl.run.hub import HubPushError, push_folder
from rollouts.config_check import ConfigError
from tests.hub_server import HubStandIn

TOKEN = "hf_test_secret_7f3a9c"


@pytest.fixture(scope="module")
def trained_weights(tiny_model_dir) -> dict[str, torch.Tensor]:
    """The tiny model's weights, changed (as training would), by HF name; tied lm_head left out as get_weights does."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    return {name: (t + 0.01 * torch.randn(t.shape, generator=generator)).contiguous()
            for name, t in model.state_dict().items() if name != "lm_head.weight"}


def _load(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def test_a_folder_written_from_weights_loads_back_equal_with_the_base_tokenizer(tmp_path, tiny_model_dir,
                                                                                 trained_weights):
    from transformers import AutoTokenizer

    out = write_hf_folder(tmp_path / "hf", trained_weights.items(), str(tiny_model_dir))
    loaded = _load(out)
    for name, tensor in trained_weights.items():
        assert torch.equal(loaded[name], tensor), name
    assert torch.equal(loaded["lm_head.weight"], trained_weights["model.embed_tokens.weight"])  # tied on load
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert AutoTokenizer.from_pretrained(out).encode("Hello <NEXT/>") == base.encode("Hello <NEXT/>")
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temp folder left


def test_large_weights_are_sharded_with_the_index_transformers_reads(tmp_path, tiny_model_dir, trained_weights):
    out = write_hf_folder(tmp_path / "hf", trained_weights.items(), str(tiny_model_dir), max_shard_bytes=2_000_000)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / SAFETENSORS_INDEX).read_text())
    assert set(index["weight_map"]) == set(trained_weights) and set(index["weight_map"].values()) == set(shards)
    loaded = _load(out)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in trained_weights.items())


def test_bf16_weights_arriving_as_int16_bit_patterns_are_written_as_bf16(tmp_path, tiny_model_dir, trained_weights):
    """PolicyTrainer.get_weights sends bf16 as its int16 bit pattern (numpy has no bf16)."""
    from safetensors.torch import load_file

    bf16 = {name: t.to(torch.bfloat16) for name, t in trained_weights.items()}
    arrays = [(name, t.view(torch.int16).numpy()) for name, t in bf16.items()]
    out = write_hf_folder(tmp_path / "hf", arrays, str(tiny_model_dir))
    saved = load_file(out / "model.safetensors")
    assert all(saved[name].dtype == torch.bfloat16 and torch.equal(saved[name], t) for name, t in bf16.items())
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_a_failed_write_keeps_the_previous_folder_and_leaves_no_temp(tmp_path, tiny_model_dir, trained_weights):
    out = write_hf_folder(tmp_path / "hf", trained_weights.items(), str(tiny_model_dir))
    before = (out / "model.safetensors").read_bytes()
    no_tokenizer = tmp_path / "base_without_tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    changed = {name: t + 1 for name, t in trained_weights.items()}
    with pytest.raises(Exception):
        write_hf_folder(out, changed.items(), str(no_tokenizer))
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base_without_tokenizer", "hf"]


class PolicyWeights:
    """The two calls of rl/workers/cluster.py's Cluster that checkpoints and exports make, over fixed weights."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights, self.fetches = weights, 0

    def save(self, directory: str) -> None:
        (Path(directory) / "deepspeed").mkdir()
        (Path(directory) / "deepspeed" / "mp_rank_00_model_states.pt").write_bytes(b"ranks' state")

    def policy_weights(self) -> list:
        self.fetches += 1
        return [(name, t.numpy()) for name, t in self.weights.items()]


def _cfg(model_dir: Path, **ckpt_fields) -> TrainConfig:
    cfg = TrainConfig(exp_name="export_test", total_steps=2)
    cfg.model.path = str(model_dir)
    for key, value in ckpt_fields.items():
        setattr(cfg.ckpt, key, value)
    return cfg


def test_save_hf_puts_an_hf_folder_in_the_checkpoint_its_manifest_and_the_run_folder(tmp_path, tiny_model_dir,
                                                                                      trained_weights):
    from launch.eval import model_folder

    cfg, cluster = _cfg(tiny_model_dir, save_hf=True), PolicyWeights(trained_weights)
    state = {"config": {"model": {"path": str(tiny_model_dir)}}}
    checkpoint = ckpt.save_checkpoint(tmp_path, 2, state, checkpoint_writer(cfg, cluster), keep_last=1)
    listed = {entry["path"] for entry in ckpt.read_manifest(checkpoint)["files"]}
    assert {f"{HF_FOLDER}/model.safetensors", f"{HF_FOLDER}/config.json", f"{HF_FOLDER}/tokenizer.json"} <= listed
    ckpt.verify_checkpoint(checkpoint)
    # launch/eval.py loads the checkpoint's own folder instead of exporting the DeepSpeed states again.
    assert model_folder(str(checkpoint)) == (str(checkpoint / HF_FOLDER), 2)
    # The end of the run: the final checkpoint's folder, linked (the same weights), not fetched from the ranks again.
    final = write_final_folder(cfg, tmp_path, cluster)
    assert final == tmp_path / HF_FOLDER and cluster.fetches == 1
    assert (final / "model.safetensors").stat().st_ino == (checkpoint / HF_FOLDER / "model.safetensors").stat().st_ino
    assert all(torch.equal(_load(final)[n], t) for n, t in trained_weights.items())


def test_without_save_hf_checkpoints_hold_no_hf_folder_and_the_run_none(tmp_path, tiny_model_dir, trained_weights):
    cfg, cluster = _cfg(tiny_model_dir), PolicyWeights(trained_weights)
    checkpoint = ckpt.save_checkpoint(tmp_path, 2, {}, checkpoint_writer(cfg, cluster), keep_last=1)
    assert not (checkpoint / HF_FOLDER).exists()
    assert write_final_folder(cfg, tmp_path, cluster) is None and not (tmp_path / HF_FOLDER).exists()
    assert cluster.fetches == 0


@pytest.fixture
def hub(monkeypatch):
    """The stand-in Hub, and huggingface_hub pointed at it (HF_ENDPOINT) with the legacy LFS upload (no Xet)."""
    import huggingface_hub.constants as hub_constants

    with HubStandIn(TOKEN) as server:
        monkeypatch.setattr(hub_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        yield server


def test_push_to_hub_uploads_every_file_with_its_bytes_and_the_token_only_in_the_header(
        tmp_path, tiny_model_dir, trained_weights, hub, monkeypatch, caplog):
    monkeypatch.setenv("AFRL_TEST_HUB_TOKEN", TOKEN)
    cfg = _cfg(tiny_model_dir, push_to_hub="afrl-test/policy", hub_token_env="AFRL_TEST_HUB_TOKEN")
    folder = write_final_folder(cfg, tmp_path, PolicyWeights(trained_weights))
    caplog.set_level(logging.DEBUG)
    url = push_final_folder(cfg, tmp_path)
    assert url.startswith(f"{hub.url}/afrl-test/policy/commit/")
    assert hub.repos == {"afrl-test/policy": "private"}
    local = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert hub.files["afrl-test/policy"] == local and "model.safetensors" in local
    assert ("PUT", f"/lfs-objects/{__import__('hashlib').sha256(local['model.safetensors']).hexdigest()}") in \
        hub.requests  # the weights went through the LFS batch upload, not inline
    assert hub.auth and set(hub.auth) == {f"Bearer {TOKEN}"}
    assert TOKEN not in caplog.text
    # A second push of a changed folder: the repo exists (409 accepted), the new bytes replace the old.
    write_hf_folder(folder, ((n, t + 1) for n, t in trained_weights.items()), str(tiny_model_dir))
    push_final_folder(cfg, tmp_path)
    assert hub.files["afrl-test/policy"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_a_rejected_push_names_repo_and_folder_never_the_token(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("AFRL_TEST_HUB_TOKEN", "hf_wrong_token_b41e")
    folder = tmp_path / "hf_model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(HubPushError, match=rf"ckpt.push_to_hub='afrl-test/policy': pushing {folder} failed") as error:
        push_folder(folder, "afrl-test/policy", "AFRL_TEST_HUB_TOKEN", "test")
    assert "hf_wrong_token_b41e" not in str(error.value) and "hf upload afrl-test/policy" in str(error.value)


def test_push_to_hub_without_the_token_variable_is_a_start_up_error_naming_it(tiny_model_dir, monkeypatch):
    monkeypatch.delenv("AFRL_TEST_HUB_TOKEN", raising=False)
    cfg = _cfg(tiny_model_dir, push_to_hub="afrl-test/policy", hub_token_env="AFRL_TEST_HUB_TOKEN")
    with pytest.raises(ConfigError, match=r"ckpt.push_to_hub='afrl-test/policy' needs a hub token in the environment "
                                          r"variable AFRL_TEST_HUB_TOKEN \(ckpt.hub_token_env\)"):
        validate(cfg)
    monkeypatch.setenv("AFRL_TEST_HUB_TOKEN", "")
    with pytest.raises(ConfigError, match="AFRL_TEST_HUB_TOKEN"):
        validate(cfg)
    monkeypatch.setenv("AFRL_TEST_HUB_TOKEN", TOKEN)
    validate(cfg)
    validate(_cfg(tiny_model_dir))  # no push: no token needed
