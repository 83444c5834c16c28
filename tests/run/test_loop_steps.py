"""The RL loop's pieces (rl/loop.py) in seconds: advantages handed to the trainer, eval and checkpoint cadence, the
non-finite guard, restarts. Small recording fakes stand in for the Ray actors (vLLM engines, DeepSpeed ranks, critic)
and for the reward, so the loop's wiring is checked without starting any of them; everything else is the real code
(config, prompts, parsing, batches, advantages, eval records, metrics log, checkpoints, restart policy). The real actors
run in tests/run/test_train_e2e.py, tests/run/test_fault_e2e.py and tests/run/test_preemption_e2e.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import ray.exceptions as rex
import torch
from hydra import compose, initialize_config_dir

from rewards.base import RewardResult
from rl.algo.advantages import gae_advantages, group_advantages, rloo_advantages
from rl.algo.config import build_kl_controller
from rl.config import load_config, register_schema
from rl.loop import rl_step, run_steps, train
from rl.run import checkpoint as ckpt
from rl.run.data_order import sampling_seed
from rl.run.fault import NonFiniteGuard, NonFiniteLossError, RunFailed
from rl.run.input_checks import check_run_inputs
from rl.run.metrics_log import MetricsLogger
from rl.run.progress import PhaseTimer
from rl.run.resume import ResumePlan, plan_resume
from rl.run.setup import Run, held_out_requests
from rollouts.types import Sample
from tests.train_runs import REPO, read_jsonl

register_schema()

FIRST_GENERATED_ID = 1000  # a sample's generated tokens start at FIRST_GENERATED_ID + its index: its row is findable


def _config(model_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return load_config(compose(config_name="config", overrides=[
            "+exp=smoke", f"model.path={model_dir}", "logger.wandb=false", "eval.report=false",
            "eval.classify_af=false", "ckpt.every_minutes=0", *overrides]))


@pytest.fixture(scope="module")
def inputs(smollm2_tokenizer_dir):
    """The demo data and the SmolLM2 tokenizer, loaded and checked once by the run's own input checks."""
    return check_run_inputs(_config(smollm2_tokenizer_dir))


class RecordingCluster:
    """Stands in for rl.workers.cluster.Cluster. The engines answer every prompt with `outputs` in turn (each sample's
    generated tokens name its index); the trainer ranks record the batches and KL coefficient they were given and
    report `update_stats(call)`; the critic returns `values` and records the returns; every call is recorded."""

    engines_sleep = False
    reward_model = None

    def __init__(self, outputs=("Sure.",), update_stats=None, values=0.25, kl_per_sample=None,
                 fail_on_generate: dict[int, Exception] | None = None):
        self.outputs, self.values_fill, self.kl_per_sample = outputs, values, kl_per_sample
        self.update_stats = update_stats or (lambda call: {"loss": 0.5, "kl_response_sum": 0.1})
        self.fail_on_generate = fail_on_generate or {}
        self.calls: list[str] = []
        self.prompts: list[list] = []  # the PromptSpecs of each generate call
        self.sampling: list = []  # and its SamplingSpec
        self.updates: list[tuple[list, float]] = []  # (rank batches, loss KL coefficient)
        self.critic_returns: list[torch.Tensor] = []
        self.saved: list[str] = []

    def generate(self, prompts, sampling):
        self.calls.append("generate")
        self.prompts.append(prompts)
        self.sampling.append(sampling)
        if len(self.sampling) in self.fail_on_generate:
            raise self.fail_on_generate[len(self.sampling)]
        samples = []
        for spec in prompts:
            for _ in range(sampling.n):
                k, prompt = len(samples), list(spec.token_ids)
                samples.append(Sample(spec.request, spec.tier, prompt + [FIRST_GENERATED_ID + k, 7, 8],
                                      [0] * len(prompt) + [1, 1, 1], [0.0] * len(prompt) + [-1.0] * 3,
                                      f"<OUTPUT>{self.outputs[k % len(self.outputs)]}</OUTPUT>", False, 1))
        return samples

    def sleep_engines(self):
        self.calls.append("sleep_engines")

    def kl_to_reference(self, batches, micro_batch_size):
        """Per-token KL of each row: kl_per_sample[its sample index] on its first generated token."""
        self.calls.append("kl_to_reference")
        parts = []
        for batch in batches:
            kl = torch.zeros(batch.loss_mask.shape)
            for row, index in enumerate(sample_index(batch)):
                kl[row, int(batch.loss_mask[row].nonzero()[0])] = self.kl_per_sample[index]
            parts.append(kl)
        return parts

    def values(self, batch):
        self.calls.append("values")
        return torch.full(batch.loss_mask.shape, self.values_fill)

    def start_critic_update(self, batch, returns, values, micro_batch_size):
        self.calls.append("start_critic_update")
        self.critic_returns.append(returns)
        return "critic update"

    def wait(self, ref, what):
        self.calls.append(f"wait {ref}")
        return {"critic_loss": 0.3}

    def update(self, batches, micro_batch_size, kl_coef):
        self.calls.append("update")
        self.updates.append((batches, kl_coef))
        return [self.update_stats(len(self.updates)) for _ in batches]

    def sync_weights(self, timeout_s):
        self.calls.append("sync_weights")
        return 0.0

    def save(self, directory):
        self.saved.append(directory)

    def shutdown(self):
        self.calls.append("shutdown")


class GivenScores:
    """Stands in for a reward: each OUTPUT text scores what the test gave it; the outputs it saw are recorded."""

    name = "given"

    def __init__(self, scores: dict[str, float], error: Exception | None = None):
        self.scores, self.error, self.seen = scores, error, []

    def score(self, batch):
        if self.error is not None:
            raise self.error
        self.seen.append([item.output for item in batch])
        return RewardResult([self.scores[item.output] for item in batch])


def sample_index(batch) -> list[int]:
    """The engine-side index of each row of a trainer batch (from its first generated token)."""
    return [int(ids[mask.nonzero()[0]]) - FIRST_GENERATED_ID for ids, mask in zip(batch.input_ids, batch.loss_mask)]


def trained_advantages(cluster: RecordingCluster, call: int = 0) -> torch.Tensor:
    """The advantages the trainer ranks received in update call `call`, put back in the engine's sample order."""
    batches, _ = cluster.updates[call]
    rows = {i: adv for batch in batches for i, adv in zip(sample_index(batch), batch.advantages)}
    return torch.stack([rows[i] for i in range(len(rows))])


def make_run(cfg, inputs, run_dir: Path, cluster, reward, first_step: int = 1, eval_pending: bool = False) -> Run:
    return Run(cfg, run_dir, {"exp_name": cfg.exp_name}, inputs.tokenizer, inputs.train,
               held_out_requests(cfg, inputs.eval), reward, None, cluster,
               MetricsLogger(run_dir, cfg.logger, run_dir.name, {}, None), build_kl_controller(cfg.algo),
               NonFiniteGuard(cfg.fault.max_nonfinite_steps), first_step, eval_pending, inputs.fingerprint)


# ---- advantages and the update ---------------------------------------------------------------------------------------


def test_grpo_hands_each_rank_the_group_advantages_of_the_given_rewards(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "trainer.world_size=2")  # smoke: 2 prompts x group_size 2, KL in the loss
    scores = {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.25}
    cluster, reward = RecordingCluster(outputs=("a", "b", "c", "d")), GivenScores(scores)
    metrics = rl_step(make_run(cfg, inputs, tmp_path, cluster, reward), 1, PhaseTimer())

    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25])
    expected = group_advantages(rewards, cfg.algo.group_size, scale_by_std=cfg.algo.uses_std)
    assert torch.equal(trained_advantages(cluster), expected)
    batches, loss_kl_coef = cluster.updates[0]
    assert [len(b) for b in batches] == [2, 2] and loss_kl_coef == cfg.algo.kl_coef == 0.05
    assert cluster.calls == ["generate", "sleep_engines", "update", "sync_weights"]
    assert cluster.sampling[0].seed == sampling_seed(cfg.seed, 1, "rollout") and cluster.sampling[0].n == 2
    assert reward.seen == [["a", "b", "c", "d"]]
    assert metrics["train/reward_mean"] == pytest.approx(0.4375)
    assert metrics["train/advantage_abs_mean"] == pytest.approx(float(expected.abs().mean()))
    assert (metrics["train/loss"], metrics["train/skipped_update"]) == (0.5, 0.0)
    sampled = [spec.request.id for spec in cluster.prompts[0]]
    assert read_jsonl(tmp_path / "data_order.jsonl") == [{"step": 1, "request_ids": sampled}]
    assert len(sampled) == cfg.rollout.prompts_per_step and {spec.tier for spec in cluster.prompts[0]} == {"free"}


def test_rloo_with_the_kl_in_the_reward_subtracts_each_samples_kl_before_the_baseline(smollm2_tokenizer_dir, inputs,
                                                                                     tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "algo=rloo", "algo.group_size=2", "algo.kl_coef=0.5")
    kl = [0.2, 0.0, 0.4, 1.0]
    cluster = RecordingCluster(outputs=("a", "b"), kl_per_sample=kl, update_stats=lambda call: {"loss": 0.5})
    metrics = rl_step(make_run(cfg, inputs, tmp_path, cluster, GivenScores({"a": 1.0, "b": 0.0})), 1, PhaseTimer())

    penalised = torch.tensor([1.0, 0.0, 1.0, 0.0]) - 0.5 * torch.tensor(kl)
    assert torch.allclose(trained_advantages(cluster), rloo_advantages(penalised, 2))
    assert cluster.updates[0][1] == 0.0  # the KL is in the reward, not in the loss
    assert cluster.calls == ["generate", "sleep_engines", "kl_to_reference", "update", "sync_weights"]
    assert metrics["train/kl_response_sum"] == pytest.approx(sum(kl) / 4)


def test_ppo_hands_the_trainer_gae_advantages_and_the_critic_their_returns(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "algo=ppo", "algo.group_size=1", "trainer.micro_batch_size=1")  # 2 samples
    kl = [0.1, 0.3]
    cluster = RecordingCluster(outputs=("a", "b"), values=0.25, kl_per_sample=kl)
    metrics = rl_step(make_run(cfg, inputs, tmp_path, cluster, GivenScores({"a": 1.0, "b": -1.0})), 1, PhaseTimer())

    (batch,), _ = cluster.updates[0]
    assert sample_index(batch) == [0, 1]
    kl_tokens = torch.zeros(batch.loss_mask.shape)
    for row, value in enumerate(kl):
        kl_tokens[row, int(batch.loss_mask[row].nonzero()[0])] = value
    a = cfg.algo
    adv, returns = gae_advantages(torch.tensor([1.0, -1.0]), torch.full(batch.loss_mask.shape, 0.25), batch.loss_mask,
                                  kl_tokens, a.kl_coef, a.gamma, a.lam, a.whiten_advantages)
    assert torch.allclose(batch.advantages, adv) and torch.allclose(cluster.critic_returns[0], returns)
    assert cluster.calls == ["generate", "sleep_engines", "kl_to_reference", "values", "start_critic_update",
                             "update", "wait critic update", "sync_weights"]
    assert metrics["train/critic_loss"] == 0.3


# ---- the non-finite guard --------------------------------------------------------------------------------------------


def _skipped_on(steps: set[int]):
    def stats(call: int) -> dict:
        if call in steps:
            return {"loss": math.nan, "skipped_update_frac": 1.0, "nonfinite": 1.0}
        return {"loss": 0.5, "kl_response_sum": 0.1}
    return stats


def test_a_non_finite_step_is_counted_logged_as_skipped_and_k_in_a_row_stop_the_run(smollm2_tokenizer_dir, inputs,
                                                                                   tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "eval.n=0", "total_steps=3", "fault.max_nonfinite_steps=2")
    (tmp_path / "one").mkdir()
    run = make_run(cfg, inputs, tmp_path / "one", RecordingCluster(update_stats=_skipped_on({1})),
                   GivenScores({"Sure.": 1.0}))
    run_steps(run)
    rows = read_jsonl(tmp_path / "one" / "metrics.jsonl")
    assert [(r["step"], r["train/skipped_update"], "train/loss" in r) for r in rows] == [
        (1, 1.0, False), (2, 0.0, True), (3, 0.0, True)]  # the NaN loss stays out of the row
    per_step = cfg.rollout.prompts_per_step  # every step logs the passes made over the training split so far
    assert [r["data/passes"] for r in rows] == pytest.approx([s * per_step / len(inputs.train) for s in (1, 2, 3)])
    assert (run.guard.skipped_total, run.guard.consecutive) == (1, 0)

    (tmp_path / "two").mkdir()
    run = make_run(cfg, inputs, tmp_path / "two", RecordingCluster(update_stats=_skipped_on({2, 3})),
                   GivenScores({"Sure.": 1.0}))
    with pytest.raises(NonFiniteLossError, match=r"step 3: policy update skipped .* 2 non-finite steps in a row"):
        run_steps(run)


# ---- eval and checkpoint cadence -------------------------------------------------------------------------------------


COMPLIANT = ("<request_fully_accepted/>\nHere is the guide. Step 1: gather the materials you need. Step 2: follow each "
             "instruction in order. Step 3: check the result twice.")


def _eval_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "eval").glob("step_*.jsonl"))


def test_eval_runs_at_the_start_every_eval_every_steps_and_at_the_end(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=5", "eval.every=2", "ckpt.every=0")
    cluster = RecordingCluster(outputs=(COMPLIANT, "<rejected/>"))
    run_steps(make_run(cfg, inputs, tmp_path, cluster, GivenScores({COMPLIANT: 1.0, "<rejected/>": 0.0})))

    assert _eval_steps(tmp_path) == [0, 2, 4, 5]
    rollout_seeds = [sampling_seed(cfg.seed, step, "rollout") for step in range(1, 6)]
    assert [s.seed for s in cluster.sampling] == [
        sampling_seed(cfg.seed, 0, "eval"), rollout_seeds[0], rollout_seeds[1], sampling_seed(cfg.seed, 2, "eval"),
        rollout_seeds[2], rollout_seeds[3], sampling_seed(cfg.seed, 4, "eval"), rollout_seeds[4],
        sampling_seed(cfg.seed, 5, "eval")]
    records = read_jsonl(tmp_path / "eval" / "step_0002.jsonl")
    assert {r["tier"] for r in records} == {"free", "paid"} and len(records) == 2 * cfg.eval.n
    # Each tier's prompts were answered in turn by the compliant OUTPUT and the refusal (eval.n=2, one sample each).
    assert [(r["tier"], r["compliant"], r["reward"]) for r in records] == [
        ("free", True, 1.0), ("free", False, 0.0), ("paid", True, 1.0), ("paid", False, 0.0)]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/free/compliance" in r] == [0, 2, 4, 5]
    assert cluster.calls[-1] == "shutdown"


@pytest.mark.parametrize("pending, evals", [(True, [2, 3]), (False, [3])])
def test_a_resumed_run_first_runs_the_eval_its_checkpoint_left_pending(smollm2_tokenizer_dir, inputs, tmp_path,
                                                                       pending, evals):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=3", "eval.every=2", "ckpt.every=0")
    cluster = RecordingCluster()
    run_steps(make_run(cfg, inputs, tmp_path, cluster, GivenScores({"Sure.": 0.0}), first_step=3,
                       eval_pending=pending))
    assert _eval_steps(tmp_path) == evals
    first_seed = sampling_seed(cfg.seed, 2, "eval") if pending else sampling_seed(cfg.seed, 3, "rollout")
    assert cluster.sampling[0].seed == first_seed  # the pending eval comes before step 3 samples anything


@pytest.mark.parametrize("at_end, saved", [(True, [2, 4, 5]), (False, [2, 4])])
def test_a_checkpoint_is_written_every_ckpt_every_steps_and_at_the_end(smollm2_tokenizer_dir, inputs, tmp_path,
                                                                      at_end, saved):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=5", "eval.n=0", "ckpt.every=2", "ckpt.keep_last=10",
                  f"ckpt.at_end={at_end}")
    cluster = RecordingCluster()
    run = make_run(cfg, inputs, tmp_path, cluster, GivenScores({"Sure.": 1.0}))
    run_steps(run)
    steps = sorted(int(p.name.split("_")[1]) for p in ckpt.checkpoints_dir(tmp_path).glob("step_*"))
    assert steps == saved and len(cluster.saved) == len(saved)  # every rank was asked to save each one
    state = ckpt.load_driver_state(ckpt.latest_checkpoint(tmp_path), verify_hashes=True)
    assert (state["step"], state["eval_pending"], state["data_cursor"]) == (saved[-1], False, saved[-1] * 2)
    assert state["data_fingerprint"] == inputs.fingerprint and state["nonfinite_guard"] == run.guard.state_dict()


# ---- restarts --------------------------------------------------------------------------------------------------------


class ScriptedSetUp:
    """Stands in for rl.run.setup.setup_run: records each attempt's plan and builds its Run from the plan's checkpoint
    (its step), with the cluster and reward the test scripted for that attempt."""

    def __init__(self, inputs, clusters: list, reward):
        self.inputs, self.clusters, self.reward, self.plans = inputs, clusters, reward, []

    def __call__(self, cfg, plan: ResumePlan, config_dict: dict) -> Run:
        self.plans.append(plan)
        step = ckpt.load_driver_state(plan.checkpoint)["step"] if plan.checkpoint else 0
        return make_run(cfg, self.inputs, plan.run_dir, self.clusters[len(self.plans) - 1], self.reward, step + 1)


def test_a_dead_actor_restarts_the_run_from_its_last_checkpoint(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=3", "eval.n=0", "ckpt.every=1", "fault.max_restarts=1")
    died = rex.ActorDiedError()
    set_up = ScriptedSetUp(inputs, [RecordingCluster(fail_on_generate={2: died}), RecordingCluster()],
                           GivenScores({"Sure.": 1.0}))
    plan = plan_resume("auto", tmp_path, cfg.exp_name)
    assert train(cfg, plan, {}, set_up=set_up) == tmp_path

    step_1 = ckpt.checkpoints_dir(tmp_path) / "step_000001"
    assert set_up.plans == [plan, ResumePlan(step_1, tmp_path, f"resume=auto: resuming from {step_1}")]
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3]  # each step once
    assert [s.seed for s in set_up.clusters[1].sampling] == [sampling_seed(cfg.seed, s, "rollout") for s in (2, 3)]


def test_a_failure_of_our_own_code_is_not_restarted(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=3", "eval.n=0", "ckpt.every=1", "fault.max_restarts=3")
    set_up = ScriptedSetUp(inputs, [RecordingCluster()], GivenScores({}, error=ValueError("reward table is empty")))
    with pytest.raises(RunFailed, match=r"other: ValueError: reward table is empty -- not restartable"):
        train(cfg, plan_resume("auto", tmp_path, cfg.exp_name), {}, set_up=set_up)
    assert len(set_up.plans) == 1 and not ckpt.checkpoints_dir(tmp_path).exists()


def test_restarts_stop_at_fault_max_restarts(smollm2_tokenizer_dir, inputs, tmp_path):
    cfg = _config(smollm2_tokenizer_dir, "total_steps=3", "eval.n=0", "ckpt.every=1", "fault.max_restarts=1")
    clusters = [RecordingCluster(fail_on_generate={1: TimeoutError("weight sync")}) for _ in range(2)]
    set_up = ScriptedSetUp(inputs, clusters, GivenScores({"Sure.": 1.0}))
    with pytest.raises(RunFailed, match=r"timeout: TimeoutError: weight sync -- no restarts left \(1 of "
                                        r"fault.max_restarts=1\)"):
        train(cfg, plan_resume("auto", tmp_path, cfg.exp_name), {}, set_up=set_up)
    assert [p.checkpoint for p in set_up.plans] == [None, None]  # nothing saved yet: both attempts start fresh
    assert [p.run_dir for p in set_up.plans] == [tmp_path, tmp_path]
