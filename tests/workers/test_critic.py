"""The PPO critic (one DeepSpeed rank, no ZeRO, gloo, fp32) in this process: token alignment, the update fits
returns, resume."""
from __future__ import annotations

import pytest
import torch

from rl.algo.advantages import gae, terminal_reward_to_tokens
from rl.algo.batch import collate
from rl.algo.config import AlgoConfig
from rl.algo.losses import masked_mean
from rl.workers.critic import CriticTrainer
from tests.samples import one_cpu_rank, sample_of

pytestmark = pytest.mark.heavy
PROMPT = [1, 510, 2021, 314, 253, 2]
GOOD, BAD = [1234, 987, 45, 2], [777, 4242, 31000, 12, 2]


@pytest.fixture(scope="module")
def critic(tiny_model_dir):
    algo = AlgoConfig(name="ppo", advantage="gae", group_size=1, lr=1e-2, value_clip=0.5, ppo_epochs=2, minibatches=2,
                      loss_aggregation="token_mean")
    return CriticTrainer(one_cpu_rank(tiny_model_dir, 1, 2), algo, lr=None)


@pytest.fixture(scope="module")
def batch():
    # Rows 0/2 end well (reward 1), rows 1/3 badly (reward 0); 4 rows = 2 minibatches x 2 micro-batches of 1.
    return collate([sample_of(PROMPT, GOOD), sample_of(PROMPT, BAD)] * 2, [0.0] * 4, pad_token_id=2)


def _returns(batch) -> torch.Tensor:
    rewards = terminal_reward_to_tokens(torch.tensor([1.0, 0.0, 1.0, 0.0]), batch.loss_mask)
    _, returns = gae(rewards, torch.zeros_like(rewards), batch.loss_mask, gamma=1.0, lam=1.0)
    return returns  # gamma=lam=1 (Monte Carlo): every trained token's return is its row's reward


def _value_error(critic, batch, returns) -> float:
    return float(masked_mean((critic.values(batch) - returns) ** 2, batch.loss_mask))


def test_values_start_at_zero_and_are_zero_off_the_trained_tokens(critic, batch):
    values = critic.values(batch)
    assert values.shape == batch.loss_mask.shape
    assert torch.equal(values, torch.zeros_like(values))  # the zero-initialised head


def test_updates_lower_the_value_loss_on_a_fixed_batch(critic, batch):
    returns = _returns(batch)
    assert torch.equal(returns[0][batch.loss_mask[0].bool()], torch.ones(len(GOOD)))
    before = _value_error(critic, batch, returns)
    for _ in range(3):
        stats = critic.update(batch, returns, critic.values(batch), micro_batch_size=1)
    after = _value_error(critic, batch, returns)
    assert before == pytest.approx(8 / 18)  # values 0; 8 of the 18 trained tokens (4 + 5, twice) have return 1
    assert after < 0.5 * before, (before, after)
    assert set(stats) >= {"vf_loss", "vf_clip_frac", "value_mean", "return_mean", "critic_lr", "time/critic_update_s"}
    assert 0 <= stats["vf_clip_frac"] <= 1
    values = critic.values(batch)
    assert torch.all(values[~batch.loss_mask.bool()] == 0)
    good, bad = masked_mean(values[0], batch.loss_mask[0]), masked_mean(values[1], batch.loss_mask[1])
    assert good > bad  # it learned which completion leads to the reward


def test_a_value_depends_only_on_the_tokens_before_it(critic, batch):
    """values[:, t] is V(state before token t): changing trained token t leaves value t alone and moves t + 1."""
    t = len(PROMPT) + 1  # the second generated token of row 0
    changed = collate([sample_of(PROMPT, GOOD[:1] + [4000] + GOOD[2:])], [0.0], pad_token_id=2)
    original, edited = critic.values(batch.select([0])), critic.values(changed)
    assert torch.allclose(original[0, : t + 1], edited[0, : t + 1])
    assert not torch.isclose(original[0, t + 1], edited[0, t + 1])


def test_checkpoint_round_trip_restores_the_values(critic, batch, tmp_path):
    saved = critic.values(batch)
    critic.save_checkpoint(str(tmp_path))
    assert (tmp_path / "critic" / "deepspeed").is_dir()
    critic.update(batch, torch.zeros_like(saved), saved, micro_batch_size=1)
    assert not torch.allclose(critic.values(batch), saved)
    critic.load_checkpoint(str(tmp_path))
    assert torch.allclose(critic.values(batch), saved)


def test_update_rejects_misshaped_returns(critic, batch):
    with pytest.raises(ValueError, match=r"returns \(4, 3\) .* must be \[B, L\]"):
        critic.update(batch, torch.zeros(4, 3), critic.values(batch), micro_batch_size=1)
