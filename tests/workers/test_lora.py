"""LoRA policies and critics (rl/workers/lora.py) on real one-rank CPU DeepSpeed learners over the tiny model: only
the adapters train, the reference is the frozen base, engines get merged HF weights, checkpoints hold adapters only."""
from __future__ import annotations

import pytest
import torch

from rl.algo.batch import collate
from rl.algo.config import AlgoConfig
from rl.workers import lora
from rl.workers.safe_load import safe_torch_load
from rl.workers.trainer import PolicyTrainer
from tests.samples import lora_config, one_cpu_rank, sample_of
from tests.workers.test_nonfinite_guard import assert_bitwise_equal, snapshot
from tests.workers.test_trainer import BAD, GOOD, PROMPT

pytestmark = pytest.mark.heavy
STATES = ("deepspeed", "mp_rank_00_model_states.pt")


def _batch():
    return collate([sample_of(PROMPT, GOOD), sample_of(PROMPT, BAD)] * 2, [1.0, -1.0, 1.0, -1.0], pad_token_id=2)


def _trainer(model_dir, prefix_sharing: bool = False, **lora_fields) -> PolicyTrainer:
    # lr 1e-2: a few Adam steps move the zero-initialised B matrices far enough for the merged delta to matter.
    algo = AlgoConfig(lr=1e-2, kl_coef=0.1, kl_estimator="k1", tis_cap=None)
    return PolicyTrainer(one_cpu_rank(model_dir, 2, 2), algo, temperature=1.0, prefix_sharing=prefix_sharing,
                         lora=lora_config(**lora_fields))


def _base_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _frozen_base(trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.engine.module.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("prefix_sharing", [False, True], ids=["plain", "prefix_shared"])
def test_only_adapters_train_and_the_reference_is_the_base_before_and_after_updates(tiny_model_dir, prefix_sharing):
    trainer = _trainer(tiny_model_dir, prefix_sharing)
    assert trainer.reference is None  # no second copy of the model
    trainable = {n for n, p in trainer.engine.module.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    optimized = [p for group in trainer.engine.basic_optimizer.param_groups for p in group["params"]]
    assert len(optimized) == len(trainable)  # DeepSpeed got the adapters only
    frozen = _frozen_base(trainer)
    batch = _batch()
    base = trainer._no_grad_logprobs(_base_model(tiny_model_dir), batch, micro_batch_size=2)
    assert torch.equal(trainer.reference_logprobs(batch, micro_batch_size=2), base)
    assert trainer.kl_to_reference(batch, micro_batch_size=2).abs().max().item() == 0.0  # B = 0: policy = base
    for _ in range(2):
        stats = trainer.update(batch, micro_batch_size=2, kl_coef=0.1)
        assert stats["skipped_update_frac"] == 0.0 and stats["grad_norm"] > 0
    assert torch.equal(trainer.reference_logprobs(batch, micro_batch_size=2), base)
    assert_bitwise_equal(frozen, _frozen_base(trainer))
    policy = trainer._no_grad_logprobs(trainer.engine.module, batch, micro_batch_size=4)
    trained = batch.loss_mask.bool()
    assert (policy - base)[trained].abs().max().item() > 1e-3  # the adapters moved the policy
    kl = trainer.kl_to_reference(batch, micro_batch_size=2)
    torch.testing.assert_close(kl[trained], (policy - base)[trained], atol=1e-5, rtol=1e-5)  # k1 = log pi - log ref


def test_merged_weights_in_a_plain_hf_model_give_the_peft_models_logits(tiny_model_dir):
    trainer = _trainer(tiny_model_dir)
    for _ in range(3):
        trainer.update(_batch(), micro_batch_size=2)
    frozen = _frozen_base(trainer)
    weights = {name: torch.from_numpy(array) for name, array in trainer.get_weights()}
    plain = _base_model(tiny_model_dir)
    assert set(weights) == set(plain.state_dict()) - {"lm_head.weight"}  # HF names; the tied head is vLLM's to tie
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected
    ids = _batch().input_ids
    with torch.no_grad():
        peft_logits = trainer.engine.module(input_ids=ids).logits
        merged_logits = plain(input_ids=ids).logits
        base_logits = _base_model(tiny_model_dir)(input_ids=ids).logits
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-5, rtol=1e-5)
    assert (merged_logits - base_logits).abs().max().item() > 1e-3  # the merge carried the adapters' change
    assert_bitwise_equal(frozen, _frozen_base(trainer))  # merging left the live model alone
    assert not any(layer.merged for layer in lora._lora_layers(trainer.engine.module).values())


def test_checkpoint_holds_the_adapters_only_and_resumes_over_the_base(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir)
    trainer.update(_batch(), micro_batch_size=2)
    trainer.save_checkpoint(str(tmp_path))
    saved = snapshot(trainer.engine)
    states = safe_torch_load(tmp_path.joinpath(*STATES), allow_deepspeed=True)["module"]
    trainable = {n for n, p in trainer.engine.module.named_parameters() if p.requires_grad}
    assert set(states) == trainable  # no frozen weight, not even the tied head under its second name
    base_bytes = sum(p.numel() * p.element_size() for p in _base_model(tiny_model_dir).parameters())
    assert tmp_path.joinpath(*STATES).stat().st_size < base_bytes / 10

    trainer.update(_batch(), micro_batch_size=2)  # adapters and Adam state move on
    resumed = _trainer(tiny_model_dir)  # a fresh start from model.path, as a resumed run makes
    resumed.load_checkpoint(str(tmp_path))
    assert_bitwise_equal(saved, snapshot(resumed.engine))

    other = _trainer(tiny_model_dir, target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValueError, match=r"DeepSpeed checkpoint module states: module states do not fit .*"
                                         r"unexpected \['base_model.model.model.layers.0.mlp"):
        other.load_checkpoint(str(tmp_path))


def test_target_modules_mixing_all_linear_with_names_is_refused():
    with pytest.raises(ValueError, match=r"model.lora.target_modules: \['all-linear', 'q_proj'\] mixes"):
        lora.peft_config(lora_config(target_modules=["all-linear", "q_proj"]), "CAUSAL_LM")


def test_merged_model_rebuilds_the_policy_from_a_checkpoint(tiny_model_dir, tmp_path):
    """What an HF export of a LoRA run does: the base from model.path + the checkpoint's adapters, merged."""
    trainer = _trainer(tiny_model_dir)
    for _ in range(2):
        trainer.update(_batch(), micro_batch_size=2)
    trainer.save_checkpoint(str(tmp_path))
    states = safe_torch_load(tmp_path.joinpath(*STATES), allow_deepspeed=True)["module"]
    plain = lora.merged_model(str(tiny_model_dir), states, lora_config()).eval()
    assert not lora.is_peft(plain)
    ids = _batch().input_ids
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, trainer.engine.module(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)


def test_a_lora_critic_trains_adapters_and_its_value_head_and_checkpoints_only_those(tiny_model_dir, tmp_path):
    from rl.workers.critic import CriticTrainer

    algo = AlgoConfig(name="ppo", advantage="gae", group_size=1, lr=1e-2, loss_aggregation="token_mean")
    critic = CriticTrainer(one_cpu_rank(tiny_model_dir, 2, 2), algo, lr=None, lora=lora_config())
    trainable = {n for n, p in critic.engine.module.named_parameters() if p.requires_grad}
    assert {"value_head.weight", "value_head.bias"} <= trainable
    assert all(n.startswith("value_head.") or ".lora_" in n for n in trainable)
    batch = _batch()
    returns = batch.loss_mask.float()
    error = lambda: float(((critic.values(batch) - returns) ** 2)[batch.loss_mask.bool()].mean())  # noqa: E731
    before = error()
    for _ in range(3):
        stats = critic.update(batch, returns, critic.values(batch), micro_batch_size=2)
        assert stats["critic_skipped_update_frac"] == 0.0
    assert error() < 0.5 * before
    critic.save_checkpoint(str(tmp_path))
    states = safe_torch_load(tmp_path.joinpath("critic", *STATES), allow_deepspeed=True)["module"]
    assert set(states) == trainable
    saved = critic.values(batch)
    critic.update(batch, torch.zeros_like(returns), saved, micro_batch_size=2)
    critic.load_checkpoint(str(tmp_path))
    assert torch.equal(critic.values(batch), saved)


def test_launch_eval_exports_a_lora_checkpoint_with_the_adapters_merged(tiny_model_dir, tmp_path):
    """A LoRA run's checkpoint without ckpt.save_hf: launch/eval.py's export merges its adapters into the base."""
    from dataclasses import asdict

    from transformers import AutoModelForCausalLM

    from launch.eval import model_folder
    from rl.run import checkpoint as ckpt

    trainer = _trainer(tiny_model_dir)
    trainer.update(_batch(), micro_batch_size=2)
    state = {"step": 3, "config": {"model": {"path": str(tiny_model_dir), "lora": asdict(lora_config())}}}
    checkpoint = ckpt.save_checkpoint(tmp_path, 3, state, trainer.save_checkpoint, keep_last=1)
    folder, step = model_folder(str(checkpoint))
    assert step == 3 and folder == str(checkpoint / "hf_export")
    exported = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = _batch().input_ids
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, trainer.engine.module(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
