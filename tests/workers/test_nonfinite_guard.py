"""A NaN/inf loss or gradient skips the whole optimizer step: real DeepSpeed engines (ZeRO 0-3, fp32 and bf16) and a
real PolicyTrainer on the tiny model, in this process. Skipped = weights, Adam moments and step count bitwise unchanged,
gradients dropped, the LR schedule not advanced; the next finite step moves the weights again."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl.algo.batch import collate
from rl.algo.config import AlgoConfig
from rl.workers.cluster import free_port
from rl.workers.deepspeed_rank import init_rank
from rl.workers.learner import full_weights
from rl.workers.step_gate import StepGate
from rl.workers.trainer import PolicyTrainer
from tests.samples import one_cpu_rank, sample_of
from tests.train_runs import HANG_GUARD_S
from tests.workers.test_trainer import BAD, GOOD, PROMPT, lora_of

pytestmark = pytest.mark.heavy
REPO = Path(__file__).resolve().parents[2]


def snapshot(engine) -> dict[str, torch.Tensor]:
    """Every module weight, every master weight the optimizer updates, and every optimizer state value."""
    if engine.zero_optimization_stage() == 3:
        return _zero3_snapshot(engine)
    out = {f"module.{k}": v.detach().clone() for k, v in engine.module.state_dict().items()}
    optimizer = engine.basic_optimizer
    for i, group in enumerate(optimizer.param_groups):
        for j, param in enumerate(group["params"]):
            out[f"master.{i}.{j}"] = param.detach().clone()
            for key, value in optimizer.state.get(param, {}).items():
                out[f"state.{i}.{j}.{key}"] = value.detach().clone() if torch.is_tensor(value) else torch.tensor(value)
    return out


def _zero3_snapshot(engine) -> dict[str, torch.Tensor]:
    """ZeRO-3: the gathered module weights, and the fp32 partitions the optimizer steps one at a time (its param groups
    hold them only during the step) with their states."""
    out = {f"module.{k}": v.clone() for k, v in full_weights(engine.module, sharded=True)}
    state = engine.basic_optimizer.state
    for i, flat in enumerate(engine.optimizer.fp32_partitioned_groups_flat):
        out[f"master.{i}"] = flat.detach().clone()
        for key, value in state.get(flat, {}).items():
            out[f"state.{i}.{key}"] = value.detach().clone() if torch.is_tensor(value) else torch.tensor(value)
    return out


def assert_bitwise_equal(before: dict, after: dict) -> None:
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"changed by a skipped step: {changed}"


@pytest.fixture(scope="module")
def world():
    if not torch.distributed.is_initialized():
        init_rank(0, 1, "127.0.0.1", free_port(), "cpu", seed=0)


def _engine(stage: int, bf16: bool):
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
              "zero_optimization": {"stage": stage},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True, "fused": True}},
              "bf16": {"enabled": bf16}, "steps_per_print": 10**9,
              "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 1e-3, "warmup_max_lr": 1e-2,
                                                          "warmup_num_steps": 5, "warmup_type": "linear"}}}
    engine, _, _, scheduler = deepspeed.initialize(model=model, model_parameters=list(model.parameters()),
                                                   config=config)
    return engine, scheduler


def _window(engine, gate, fault: str | None) -> list:
    """Two micro-batches (one optimizer step); `fault`: "loss" makes the first loss NaN, "grad" the second backward's
    gradient of one weight inf."""
    dtype = next(engine.module.parameters()).dtype
    results = []
    for micro in range(2):
        output = engine(torch.randn(1, 8).to(dtype)).float().sum()
        loss = output * float("nan") if fault == "loss" and micro == 0 else output
        hook = engine.module[0].weight.register_hook(lambda g: g * float("inf")) if fault == "grad" and micro else None
        # ZeRO-3 holds only shards outside a forward: its zero loss goes through this forward's graph.
        zero = (lambda: output * 0.0) if engine.zero_optimization_stage() == 3 else \
            (lambda: sum(p.sum() for p in engine.module.parameters()) * 0.0)
        gate.backward(loss, zero=zero)
        if hook is not None:
            hook.remove()
        results.append(gate.step())
    return results


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_a_non_finite_window_skips_the_whole_step_in_every_zero_stage(world, stage, bf16, fault):
    engine, scheduler = _engine(stage, bf16)
    gate = StepGate(engine)
    assert _window(engine, gate, None) == [None, True]  # a first real step: Adam has moments to keep
    before, lr, skipped = snapshot(engine), scheduler.get_last_lr(), engine.skipped_steps
    assert _window(engine, gate, fault) == [None, False]
    assert_bitwise_equal(before, snapshot(engine))
    assert scheduler.get_last_lr() == lr and engine.skipped_steps == skipped + 1
    assert all(p.grad is None for p in engine.module.parameters())  # nothing carried into the next window
    assert _window(engine, gate, None) == [None, True]
    assert scheduler.get_last_lr() != lr  # an applied step advances the warmup, so the check above means something
    after = snapshot(engine)
    assert not torch.equal(before["module.0.weight"], after["module.0.weight"])
    assert all(torch.isfinite(v.float()).all() for v in after.values())


def test_without_the_gate_fp32_without_zero_applies_an_inf_gradient(world):
    """The case DeepSpeed does not cover itself: the same inf gradient, no StepGate, and the weights go NaN."""
    engine, _ = _engine(0, False)
    dtype = next(engine.module.parameters()).dtype
    for micro in range(2):
        loss = engine(torch.randn(1, 8).to(dtype)).sum()
        hook = engine.module[0].weight.register_hook(lambda g: g * float("inf")) if micro else None
        engine.backward(loss)
        if hook is not None:
            hook.remove()
        engine.step()
    assert engine.skipped_steps == 0 and not torch.isfinite(engine.module[0].weight).all()


# ---- the real policy trainer (full fine-tuning and LoRA) ------------------------------------------------------------
@pytest.fixture(scope="module", params=["full", "lora"])
def trainer(request, tiny_model_dir):
    algo = AlgoConfig(lr=1e-3, kl_coef=0.0, tis_cap=None)
    return PolicyTrainer(one_cpu_rank(tiny_model_dir, 2, 2), algo, temperature=1.0, prefix_sharing=False,
                         lora=lora_of(request.param))


def _trained_down_proj(trainer) -> tuple[str, torch.nn.Parameter]:
    """(snapshot key, parameter) of a trained weight of layer 0's MLP: the weight itself, or its LoRA B matrix."""
    name, param = next((n, p) for n, p in trainer.engine.module.named_parameters()
                       if "layers.0.mlp.down_proj" in n and p.requires_grad and ".lora_A." not in n)
    return f"module.{name}", param


def _batch(advantages: list[float]):
    return collate([sample_of(PROMPT, GOOD), sample_of(PROMPT, BAD)] * 2, advantages, pad_token_id=2)


def test_policy_trainer_skips_an_update_with_a_nan_advantage_then_applies_the_next(trainer):
    trainer.update(_batch([1.0, -1.0, 1.0, -1.0]), micro_batch_size=2)  # Adam moments exist from here on
    before, skipped = snapshot(trainer.engine), trainer.engine.skipped_steps
    stats = trainer.update(_batch([1.0, -1.0, math.nan, -1.0]), micro_batch_size=2)  # 2nd micro-batch's loss: NaN
    assert_bitwise_equal(before, snapshot(trainer.engine))
    assert trainer.engine.skipped_steps == skipped + 1
    assert stats["skipped_update_frac"] == 1.0 and stats["nonfinite"] == 0.5
    assert "grad_norm" not in stats and all(math.isfinite(v) for v in stats.values())
    assert math.isfinite(stats["loss"])  # the finite micro-batch's loss only
    stats = trainer.update(_batch([1.0, -1.0, 1.0, -1.0]), micro_batch_size=2)
    assert stats["skipped_update_frac"] == 0.0 and stats["grad_norm"] > 0
    key, _ = _trained_down_proj(trainer)
    assert not torch.equal(before[key], snapshot(trainer.engine)[key])


def test_policy_trainer_skips_an_update_whose_gradient_is_inf(trainer):
    before, skipped = snapshot(trainer.engine), trainer.engine.skipped_steps
    _, weight = _trained_down_proj(trainer)
    hook = weight.register_hook(lambda g: g * float("inf"))
    try:
        stats = trainer.update(_batch([1.0, -1.0, 1.0, -1.0]), micro_batch_size=2)
    finally:
        hook.remove()
    assert_bitwise_equal(before, snapshot(trainer.engine))
    assert trainer.engine.skipped_steps == skipped + 1
    assert stats["skipped_update_frac"] == 1.0 and stats["nonfinite"] == 0.0  # finite losses, inf gradient
    assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_a_fault_on_one_of_two_zero2_ranks_skips_the_step_on_both(tmp_path, fault):
    """Two real processes (gloo, ZeRO-2): only rank 1 sees the NaN loss or inf gradient; neither rank updates."""
    port = free_port()
    outs = [tmp_path / f"rank{rank}.json" for rank in range(2)]
    ranks = [subprocess.Popen([sys.executable, "-m", "tests.workers.step_gate_ranks", str(rank), str(port), fault,
                               str(outs[rank])], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    logs = [process.communicate(timeout=HANG_GUARD_S)[0] for process in ranks]
    for rank, process in enumerate(ranks):
        assert process.returncode == 0, f"rank {rank} failed:\n{logs[rank][-3000:]}"
    for rank, out in enumerate(outs):
        result = json.loads(out.read_text())
        assert result == {"first": [None, True], "faulty": [None, False], "unchanged": True, "lr_kept": True,
                          "skipped_steps": 1, "last": [None, True], "moved": True}, (rank, result)


def test_the_critic_skips_an_update_with_a_nan_return_instead_of_stopping_the_run(tiny_model_dir):
    from rl.workers.critic import CriticTrainer

    algo = AlgoConfig(name="ppo", advantage="gae", group_size=1, lr=1e-2, loss_aggregation="token_mean")
    critic = CriticTrainer(one_cpu_rank(tiny_model_dir, 2, 2), algo, lr=None)
    batch = _batch([0.0] * 4)
    returns = batch.loss_mask.float()
    critic.update(batch, returns, critic.values(batch), micro_batch_size=2)
    before, skipped = snapshot(critic.engine), critic.engine.skipped_steps
    bad = returns.clone()
    bad[2] = math.nan
    stats = critic.update(batch, bad, critic.values(batch), micro_batch_size=2)
    assert_bitwise_equal(before, snapshot(critic.engine))
    assert critic.engine.skipped_steps == skipped + 1
    assert stats["critic_skipped_update_frac"] == 1.0 and stats["critic_nonfinite"] == 0.5
    assert all(math.isfinite(v) for v in stats.values())
    stats = critic.update(batch, returns, critic.values(batch), micro_batch_size=2)
    assert stats["critic_skipped_update_frac"] == 0.0
    assert not torch.equal(before["module.value_head.weight"], snapshot(critic.engine)["module.value_head.weight"])
