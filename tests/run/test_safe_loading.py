"""Loading a checkpoint runs none of its code: a planted pickle payload (it touches a marker file when unpickled) in
the driver state, an RNG file or the model states is refused by the real load functions, naming the file."""
from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rl.run import checkpoint as ckpt
from rl.run.export import export_hf
from rl.workers import rng_state
from rl.workers.safe_load import UnsafeCheckpointError, safe_torch_load

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"exp_name": "x", "seed": 0, "model": {"path": "/models/base"}}


class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload_ran"


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": Payload(marker)}, path)
    return path


def test_the_planted_payload_is_live(tmp_path, marker):
    """The control: a plain unpickle of the planted file does run it (so the refusals below mean something)."""
    torch.load(plant(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_safe_torch_load_refuses_the_payload_naming_the_file_and_the_object(tmp_path, marker):
    path = plant(tmp_path / "states.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"{path}: refused to load: .*system.*weights_only=True") as err:
        safe_torch_load(path)
    assert not marker.exists()
    assert "unpickling anything else can run code" in str(err.value)
    torch.save({"w": torch.ones(2), "step": 3, "names": ["a"]}, tmp_path / "plain.pt")
    assert safe_torch_load(tmp_path / "plain.pt")["step"] == 3  # tensors and plain data load as before


def _checkpoint(tmp_path: Path, states: Path | None = None, marker: Path | None = None) -> Path:
    """A complete checkpoint through the real save_checkpoint; with `marker`, its model states are the payload."""

    def save_ranks(directory: str) -> None:
        target = Path(directory, "deepspeed", "mp_rank_00_model_states.pt")
        if marker is not None:
            plant(target, marker)
        else:
            target.parent.mkdir()
            torch.save({"module": {"w": torch.ones(2)}}, target)
        rng_state.save(Path(directory, "rng_rank0.json"))

    driver = {"wandb_id": "abc", "config": CONFIG, "kl_controller": {"value": 0.1}, "data_cursor": 4,
              "nonfinite_guard": {"consecutive": 1, "skipped_total": 2}}
    return ckpt.save_checkpoint(tmp_path / "run", 2, driver, save_ranks, keep_last=1)


def test_an_old_pickled_driver_state_is_refused_by_name(tmp_path, marker):
    path = _checkpoint(tmp_path)
    (path / "driver_state.json").unlink()
    plant(path / "driver_state.pt", marker)
    with pytest.raises(ckpt.CheckpointError, match=rf"{path}/driver_state.pt: driver state in the old pickle format"):
        ckpt.load_driver_state(path, verify_hashes=True)
    assert not marker.exists()


def test_an_old_pickled_rng_file_is_refused_by_name(tmp_path, marker):
    plant(tmp_path / "rng_rank0.pt", marker)
    with pytest.raises(rng_state.RNGStateError, match=rf"{tmp_path}/rng_rank0.pt: RNG state in the old pickle format"):
        rng_state.load(tmp_path / "rng_rank0.json")
    assert not marker.exists()


def test_export_refuses_planted_model_states_even_with_a_matching_manifest(tmp_path, marker):
    """Whoever shares a checkpoint can write its manifest too: the hashes match, the payload is still refused."""
    path = _checkpoint(tmp_path, marker=marker)
    ckpt.verify_checkpoint(path)  # integrity holds: the manifest was written over the planted file
    with pytest.raises(UnsafeCheckpointError, match=r"deepspeed/mp_rank_00_model_states.pt: refused to load"):
        export_hf(path, tmp_path / "hf", "/models/base")
    assert not marker.exists()


def _eval_model_folder():
    spec = importlib.util.spec_from_file_location("afrl_eval_launcher", REPO / "launch" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model_folder


def test_eval_of_a_shared_checkpoint_refuses_a_planted_payload(tmp_path, marker):
    model_folder = _eval_model_folder()
    path = _checkpoint(tmp_path, marker=marker)
    with pytest.raises(UnsafeCheckpointError, match=r"mp_rank_00_model_states.pt: refused to load"):
        model_folder(str(path))
    (path / "driver_state.json").unlink()
    plant(path / "driver_state.pt", marker)
    with pytest.raises(ckpt.CheckpointError, match=r"driver_state.pt: driver state in the old pickle format"):
        model_folder(str(path))
    assert not marker.exists()


def test_a_resume_verifies_every_hash_before_loading(tmp_path):
    path = _checkpoint(tmp_path)
    rng_file = path / "rng_rank0.json"
    text = rng_file.read_text()
    rng_file.write_text(text.replace('"pos": ', '"pos":0', 1)[: len(text)].ljust(len(text)))  # same size, new bytes
    with pytest.raises(ckpt.CheckpointError, match=r"file rng_rank0.json has sha256 .*, manifest.json says"):
        ckpt.load_driver_state(path, verify_hashes=True)


def test_driver_state_is_json_and_restores_the_driver_rng(tmp_path):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    path = _checkpoint(tmp_path)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    state = json.loads((path / "driver_state.json").read_text())  # plain JSON, nothing pickled
    assert (state["step"], state["data_cursor"], state["kl_controller"]) == (2, 4, {"value": 0.1})
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    loaded = ckpt.load_driver_state(path, verify_hashes=True)
    ckpt.restore_driver_rng(loaded["rng"], str(path / "driver_state.json"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert loaded["nonfinite_guard"] == {"consecutive": 1, "skipped_total": 2} and loaded["config"] == CONFIG


def test_a_damaged_rng_state_names_the_file_and_field(tmp_path):
    state = rng_state.capture()
    state["numpy"]["key"] = "not a list"
    path = tmp_path / "rng_rank3.json"
    rng_state.save(path, state)
    with pytest.raises(rng_state.RNGStateError, match=rf"{path}: RNG state field numpy.key has type str"):
        rng_state.restore(rng_state.load(path), str(path))
    path.write_text('{"format": 0}')
    with pytest.raises(rng_state.RNGStateError, match=rf"{path}: RNG state field format must be 1, got 0"):
        rng_state.load(path)
