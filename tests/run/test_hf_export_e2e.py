"""End to end on CPU: a 2-step run (real Ray + vLLM-CPU + DeepSpeed) with ckpt.save_hf and ckpt.push_to_hub, pushing
to the local Hub stand-in (tests/hub_server.py): HF folders in every checkpoint and the run folder, the pushed bytes,
and the token nowhere in what the run wrote."""
from __future__ import annotations

import subprocess

import pytest
import torch
from safetensors.torch import load_file

from rl.run import checkpoint as ckpt
from rl.run.export import HF_FOLDER, export_hf
from tests.hub_server import HubStandIn
from tests.train_runs import HANG_GUARD_S, REPO, train_command, train_env

pytestmark = pytest.mark.heavy

TOKEN = "hf_e2e_secret_41d7b2"
REPO_ID = "afrl-test/tiny-policy"


@pytest.fixture(scope="module")
def pushed_run(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("hf_run")
    with HubStandIn(TOKEN) as hub:
        env = {key: value for key, value in train_env().items() if key not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", AFRL_TEST_HUB_TOKEN=TOKEN)
        result = subprocess.run(
            train_command(tiny_model_dir, run_dir, "ckpt.every=1", "ckpt.save_hf=true", f"ckpt.push_to_hub={REPO_ID}",
                          "ckpt.hub_token_env=AFRL_TEST_HUB_TOKEN"),
            cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return run_dir, hub, result


def test_every_checkpoint_and_the_run_folder_hold_an_hf_folder_of_the_trained_weights(pushed_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    run_dir, _, _ = pushed_run
    steps = [ckpt.checkpoints_dir(run_dir) / ckpt.step_dir_name(step) for step in (1, 2)]
    for checkpoint in steps:
        ckpt.verify_checkpoint(checkpoint)  # hf_model's files are in the manifest, hashed
        assert (checkpoint / HF_FOLDER / "model.safetensors").is_file()
    first, last = (load_file(c / HF_FOLDER / "model.safetensors") for c in steps)
    base = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(first[n], last[n]) for n in first) and any(not torch.equal(base[n], last[n]) for n in last)
    final = run_dir / HF_FOLDER
    assert (final / "model.safetensors").read_bytes() == (steps[1] / HF_FOLDER / "model.safetensors").read_bytes()
    # The policy's weights (rank 0's get_weights) are the checkpoint's DeepSpeed module states, exported the other way.
    from_states = export_hf(steps[1], run_dir / "from_states", str(tiny_model_dir))
    exported, pushed = (AutoModelForCausalLM.from_pretrained(f).state_dict() for f in (from_states, final))
    assert exported.keys() == pushed.keys() and all(torch.equal(exported[n], pushed[n]) for n in exported)


def test_the_final_folder_was_pushed_with_the_token_in_the_header_only(pushed_run):
    run_dir, hub, result = pushed_run
    assert hub.repos == {REPO_ID: "private"}
    assert hub.files[REPO_ID] == {p.name: p.read_bytes() for p in (run_dir / HF_FOLDER).iterdir()}
    assert set(hub.auth) == {f"Bearer {TOKEN}"}
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaks, leaks  # train.log, run_info.json, .hydra/ config dumps, metrics, driver states
    assert TOKEN not in result.stdout + result.stderr
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "run_info.json").is_file()
