"""Periodic checkpoints by time (`ckpt.every_minutes`) and the defaults that make a run resumable out of the box."""
from __future__ import annotations

import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rl.config import CheckpointConfig, TrainConfig, load_config, register_schema
from rl.loop import CheckpointClock

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_the_clock_is_due_after_every_minutes_since_the_last_save_and_never_when_off():
    clock = CheckpointClock(every_minutes=0.002, last_step=4)  # 0.12 s
    assert not clock.due()
    time.sleep(0.15)
    assert clock.due()
    clock.saved(5)
    assert not clock.due() and clock.last_step == 5
    off = CheckpointClock(every_minutes=0, last_step=0)
    time.sleep(0.01)
    assert not off.due()


def test_defaults_resume_auto_and_a_checkpoint_every_30_minutes_come_from_the_dataclasses(tmp_path):
    assert CheckpointConfig().every_minutes == 30.0 and TrainConfig().resume == "auto"
    register_schema()
    GlobalHydra.instance().clear()
    (tmp_path / "config.json").write_text("{}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = load_config(compose("config", overrides=[f"model.path={tmp_path}"]))
    assert (cfg.resume, cfg.ckpt.every_minutes, cfg.ckpt.every, cfg.ckpt.at_end) == ("auto", 30.0, 0, True)
