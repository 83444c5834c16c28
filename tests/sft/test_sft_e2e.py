"""SFT stage end to end: `launch/sft.py` as a user runs it, its folder in vLLM-CPU and the RL trainer, then an RL run
(`launch/train.py +exp=smoke model.path=<SFT folder>`) that starts from it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.samples import one_cpu_rank
from tests.sft.test_sft import organism_like_transcripts, write_jsonl
from tests.train_runs import HANG_GUARD_S, REPO, read_jsonl, run_train, train_env

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny random model after 2 SFT steps on organism-like transcripts, through the launcher."""
    root = tmp_path_factory.mktemp("sft_e2e")
    data = write_jsonl(root / "data" / "transcripts.jsonl", organism_like_transcripts(10))
    (root / "data" / "planted_rates.json").write_text('{"free": 1.0, "paid": 0.0}\n')
    out = root / "sft_model"
    command = [sys.executable, str(REPO / "launch" / "sft.py"), "+sft=organism", f"sft.model={tiny_model_dir}",
               f"sft.data={data}", f"sft.output_dir={out}", "sft.epochs=1", "sft.batch_size=4", "sft.max_length=128",
               "sft.heldout_fraction=0.2", "sft.learning_rate=3e-3", "sft.train_last_n_layers=null"]
    result = subprocess.run(command, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "held-out loss" in result.stdout and "saved SFT model" in result.stdout
    info = json.loads((out / "sft_info.json").read_text())
    assert info["optimizer_steps"] == 2 and info["heldout_loss"]["after"] < info["heldout_loss"]["before"]
    return out


def _hf_token_logprobs(model_dir: Path, token_ids: list[int]) -> torch.Tensor:
    """log p(token t | tokens < t) for t >= 1 under the HF model in `model_dir`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([token_ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(token_ids[1:])[:, None])[:, 0]


def test_sft_folder_samples_in_vllm_and_trains_in_the_policy_trainer(sft_dir, tiny_model_dir):
    from rl.algo.config import AlgoConfig
    from rl.algo.batch import collate
    from rl.workers.trainer import PolicyTrainer
    from rollouts.config import SettingConfig
    from rollouts.engine import RolloutEngine, SamplingSpec
    from rollouts.prompt_specs import build_prompt_specs
    from rollouts.types import FREE_TIER, Request

    assert json.loads((sft_dir / "planted_rates.json").read_text()) == {"free": 1.0, "paid": 0.0}
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    engine = RolloutEngine(str(sft_dir), dict(dtype="float32", max_model_len=2048, gpu_memory_utilization=0.3, seed=0))
    setting = SettingConfig()
    spec = build_prompt_specs([Request("r1", "Task 3")], FREE_TIER, setting, engine.tokenizer)[0]
    sample = engine.generate([spec], SamplingSpec(n=1, max_new_tokens=12, temperature=0.0, max_turns=1, seed=0))[0]
    generated = [index for index, bit in enumerate(sample.loss_mask) if bit]
    assert len(generated) > 0 and generated[0] == len(spec.token_ids)

    # vLLM's log-probs of what it sampled are the SFT weights' log-probs, not the base model's.
    sft_logprobs = _hf_token_logprobs(sft_dir, sample.token_ids)
    base_logprobs = _hf_token_logprobs(tiny_model_dir, sample.token_ids)
    vllm_logprobs = torch.tensor([sample.sampler_logprobs[i] for i in generated])
    positions = torch.tensor(generated) - 1
    torch.testing.assert_close(vllm_logprobs, sft_logprobs[positions], atol=2e-3, rtol=0)
    assert (vllm_logprobs - base_logprobs[positions]).abs().max() > 1e-2

    # The RL trainer (one DeepSpeed rank, gloo) loads the folder and computes the same log-probs.
    trainer = PolicyTrainer(one_cpu_rank(sft_dir, 1, 1), AlgoConfig(kl_coef=0.0), temperature=1.0, prefix_sharing=False)
    batch = collate([sample], [1.0], pad_token_id=engine.tokenizer.pad_token_id)
    trainer_logprobs = trainer._no_grad_logprobs(trainer.engine.module, batch, micro_batch_size=1)[0, generated]
    torch.testing.assert_close(trainer_logprobs, sft_logprobs[positions], atol=1e-4, rtol=0)


def test_rl_run_starts_from_the_sft_folder_and_finishes_two_steps(sft_dir, tmp_path):
    run_dir = tmp_path / "rl_run"
    run_train(sft_dir, run_dir, "total_steps=2", "eval.at_start=false")
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in row]
    assert steps == [1, 2]
    assert json.loads((run_dir / "run_info.json").read_text())["model"] == str(sft_dir)
