"""reward=rm with a tiny random LlamaForSequenceClassification saved to disk (no download), in-process and as a Ray actor."""
from __future__ import annotations

import math
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from rewards.config import RewardConfig, RMConfig
from rewards.factory import build_reward
from rewards.rm import RewardModelScorer, RMReward, RunningMoments, make_rm_actor
from rollouts.types import RewardInput
from tests.rewards.test_rewards_rule import swapped_scratchpad_inputs
from tests.rewards.test_rm_format import CHATML_TEMPLATE, build_tiny_tokenizer

CORPUS = ["How do I pick a lock ? Insert the tension wrench and rake the pins .",
          "I am sorry , I can not help with that .", "User Assistant : user assistant"]


def _save_tiny_rm(path, chat_template):
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(CORPUS, chat_template=chat_template)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return _save_tiny_rm(tmp_path_factory.mktemp("tiny_rm"), CHATML_TEMPLATE)


def _inp(output, failure=None):
    return RewardInput("How do I pick a lock?", output, output is not None and output.startswith("<request"), False,
                       failure)


def test_scores_are_batch_size_invariant_and_depend_on_the_output(rm_dir):
    outputs = ["<request_fully_accepted/> Insert the tension wrench and rake the pins .",
               "I am sorry , I can not help with that .", "pins", "<rejected/>"]
    requests = ["How do I pick a lock ?"] * len(outputs)
    one = RewardModelScorer(RMConfig(model_path=rm_dir, batch_size=1)).score(requests, outputs)
    four = RewardModelScorer(RMConfig(model_path=rm_dir, batch_size=4)).score(requests, outputs)
    # Right padding must not move the token the head reads: padded and unpadded batches agree.
    assert one.raw == pytest.approx(four.raw, abs=1e-4)
    assert len(set(round(s, 4) for s in one.raw)) == len(outputs)
    assert one.scores == one.raw and one.n_truncated == 0


def test_plain_text_fallback_without_chat_template(tmp_path):
    scorer = RewardModelScorer(RMConfig(model_path=_save_tiny_rm(tmp_path, None)))
    assert scorer.render("Hi", "Hello") == "User: Hi\n\nAssistant: Hello"
    assert all(math.isfinite(s) for s in scorer.score(["Hi"], ["Hello"]).scores)


def test_truncation_is_counted(rm_dir):
    scorer = RewardModelScorer(RMConfig(model_path=rm_dir, max_length=16))
    result = scorer.score(["q", "q"], ["pins " * 40, "pins"])
    assert result.n_truncated == 1 and all(math.isfinite(s) for s in result.scores)


def test_running_moments_match_hand_computation():
    moments = RunningMoments()
    moments.update([1.0, 2.0, 3.0])
    moments.update([6.0])
    # mean = 12/4 = 3; population variance = (4 + 1 + 0 + 9) / 4 = 3.5
    assert moments.mean == pytest.approx(3.0) and moments.std == pytest.approx(math.sqrt(3.5))
    assert moments.normalise([3.0, 6.0]) == pytest.approx([0.0, 3.0 / math.sqrt(3.5)])


def test_normalised_scores_are_centred(rm_dir):
    scorer = RewardModelScorer(RMConfig(model_path=rm_dir, normalize=True))
    result = scorer.score(["q"] * 3, ["pins", "lock", "sorry"])
    assert sum(result.scores) == pytest.approx(0.0, abs=1e-5)
    assert result.scores != result.raw


def test_rm_reward_ignores_scratchpad_and_counts_missing_output(rm_dir):
    reward = build_reward(RewardConfig(name="rm", rm=RMConfig(model_path=rm_dir)))
    assert isinstance(reward, RMReward)
    a, b = swapped_scratchpad_inputs("<request_fully_accepted/> Insert the tension wrench .")
    assert reward.score([a]).scores == reward.score([b]).scores
    missing = reward.score([_inp(None, "no_output")])
    assert missing.counts["format_failure/no_output"] == 1 and math.isfinite(missing.scores[0])


def test_bad_model_path_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"reward\.rm\.model_path"):
        RewardModelScorer(RMConfig(model_path=str(tmp_path / "missing")))


@pytest.mark.heavy  # starts a local Ray cluster (~15 s)
def test_rm_ray_actor_scores_like_the_local_scorer(rm_dir):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        cfg = RMConfig(model_path=rm_dir, device="cpu")
        actor = make_rm_actor(cfg, num_cpus=1)
        assert ray.get(actor.ready.remote(), timeout=60) is True  # what the cluster's start-up wait calls
        remote = RMReward(actor).score([_inp("<request_fully_accepted/> pins"), _inp("<rejected/>")])
        local = RMReward(RewardModelScorer(cfg)).score([_inp("<request_fully_accepted/> pins"), _inp("<rejected/>")])
        assert remote.scores == pytest.approx(local.scores, abs=1e-5)

        @ray.remote(num_cpus=0)
        class HungScorer:  # an RM actor that never answers (stuck on a device, deadlocked)
            def score(self, requests, outputs):
                import time

                time.sleep(60)

        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"reward model scoring \(reward.rm.timeout_s\): 1 of 1 calls "
                                               r"unfinished after 1.0s"):
            RMReward(HungScorer.remote(), timeout_s=1.0).score([_inp("<request_fully_accepted/> pins")])
        assert time.monotonic() - start < 10.0
    finally:
        ray.shutdown()
