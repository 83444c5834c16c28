"""DeepSpeed's own checkpoint load, made pickle-free (rl/workers/safe_load.py), on real engines in this process: a
trainer rank round-trips its checkpoint (weights, optimizer, RNG) and refuses a planted payload in any file it reads."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from rl.workers import rng_state
from rl.workers.cluster import free_port
from rl.workers.deepspeed_rank import init_rank
from rl.workers.safe_load import UnsafeCheckpointError, use_safe_checkpoint_loading
from tests.run.test_safe_loading import plant
from tests.workers.test_nonfinite_guard import assert_bitwise_equal, snapshot, trainer  # noqa: F401 (trainer: a fixture)
from tests.workers.test_trainer import _batch

pytestmark = pytest.mark.heavy


def test_a_trainer_checkpoint_round_trips_and_refuses_planted_files(trainer, tmp_path):
    marker = tmp_path / "payload_ran"
    trainer.update(_batch(), micro_batch_size=2)
    trainer.save_checkpoint(str(tmp_path))
    saved = snapshot(trainer.engine)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    trainer.update(_batch(), micro_batch_size=2)  # weights, Adam state and RNGs move on
    trainer.load_checkpoint(str(tmp_path))
    assert_bitwise_equal(saved, snapshot(trainer.engine))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected

    states = tmp_path / "deepspeed" / "mp_rank_00_model_states.pt"
    shutil.copy(states, tmp_path / "good_states.pt")
    plant(states, marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"{states}: refused to load"):
        trainer.load_checkpoint(str(tmp_path))
    assert not marker.exists()

    shutil.copy(tmp_path / "good_states.pt", states)
    (tmp_path / "rng_rank0.json").unlink()
    plant(tmp_path / "rng_rank0.pt", marker)
    with pytest.raises(rng_state.RNGStateError, match=r"rng_rank0.pt: RNG state in the old pickle format"):
        trainer.load_checkpoint(str(tmp_path))
    assert not marker.exists()


def _zero2_engine():
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}, "steps_per_print": 10**9}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=list(model.parameters()), config=config)
    use_safe_checkpoint_loading(engine)
    return engine


def test_zero2_optimizer_state_loads_with_the_narrow_allowlist_and_refuses_a_payload(tmp_path, trainer):
    """ZeRO files hold three DeepSpeed types besides tensors (loss scaler, fragment address, stage enum): allowed;
    a payload in the same file is not."""
    if not torch.distributed.is_initialized():
        init_rank(0, 1, "127.0.0.1", free_port(), "cpu", seed=0)
    engine = _zero2_engine()
    engine.backward(engine(torch.randn(1, 8)).sum())
    engine.step()
    engine.save_checkpoint(str(tmp_path), tag="t", save_latest=False)
    saved = snapshot(engine)
    fresh = _zero2_engine()
    path, _ = fresh.load_checkpoint(str(tmp_path), tag="t")
    assert path is not None
    assert_bitwise_equal(saved, snapshot(fresh))
    optim = tmp_path / "t" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    plant(optim, tmp_path / "payload_ran")
    with pytest.raises(UnsafeCheckpointError, match=rf"{optim}: refused to load"):
        fresh.load_checkpoint(str(tmp_path), tag="t")
    assert not (tmp_path / "payload_ran").exists()
