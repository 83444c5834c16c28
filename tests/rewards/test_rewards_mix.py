"""reward=mix: weighted sum of real components (rule, rm on a tiny model, judge on a local server) plus format penalty."""
from __future__ import annotations

import pytest

from rewards.config import MixComponent, MixConfig, RewardConfig, RMConfig, RuleConfig
from rewards.factory import build_reward
from rewards.mix import MixReward
from rewards.rm import RewardModelScorer, RMReward
from rewards.rule import RuleReward
from rollouts.types import RewardInput
from tests.rewards.test_judge_client import server  # noqa: F401  (module fixture: the local judge server)
from tests.rewards.test_rewards_rm import rm_dir  # noqa: F401  (module fixture: a tiny RM on disk)
from tests.rewards.test_rewards_rule import swapped_scratchpad_inputs


def _inp(output, failure=None):
    return RewardInput("q", output, output is not None and output.startswith("<request"), False, failure)


def test_weighted_sum_and_format_penalty():
    mix = MixReward([(RuleReward(), 2.0), (RuleReward(RuleConfig(refusal_phrases=False)), 0.5)], format_penalty=1.0)
    batch = [_inp("<request_fully_accepted/> ok"),
             _inp("<request_fully_accepted/> I'm sorry, no."),
             _inp(None, "no_output"),
             _inp("<request_fully_accepted/> ok but cut", "truncated")]
    result = mix.score(batch)
    # 2*1 + 0.5*1; 2*0 + 0.5*1; 0 - 1 penalty; 0 (rule gives 0 on a parse failure) - 1 penalty
    assert result.scores == [2.5, 0.5, -1.0, -1.0]
    # both components are named "rule", so their counters add up: 1 accepted + 2 accepted
    assert result.counts["format_penalty"] == 2 and result.counts["rule/accepted"] == 3


def test_factory_builds_mix_of_rule_rm_and_judge(rm_dir, server):  # noqa: F811
    port = server.server_address[1]
    cfg = RewardConfig(name="mix", rm=RMConfig(model_path=rm_dir),
                       mix=MixConfig(components=[MixComponent("rule", 1.0), MixComponent("rm", 0.1),
                                                 MixComponent("judge", 1.0)], format_penalty=0.5))
    cfg.judge.base_url = f"http://127.0.0.1:{port}/good/v1"
    cfg.judge.cache = False
    reward = build_reward(cfg)
    batch = [_inp("<request_fully_accepted/> pins"), _inp(None, "no_output")]
    result = reward.score(batch)
    rm_scores = RMReward(RewardModelScorer(cfg.rm)).score(batch).scores
    assert result.scores[0] == pytest.approx(1.0 + 0.1 * rm_scores[0] + 0.75)
    assert result.scores[1] == pytest.approx(0.1 * rm_scores[1] - 0.5)
    assert result.counts["judge/complied"] == 1 and result.counts["rm/format_failure/no_output"] == 1


def test_scratchpad_cannot_change_mix_reward():
    mix = build_reward(RewardConfig(name="mix"))
    a, b = swapped_scratchpad_inputs("<request_fully_accepted/> Steps.")
    assert mix.score([a]).scores == mix.score([b]).scores == [1.0]


def test_component_length_mismatch_is_a_clear_error():
    class Broken:
        name = "broken"

        def score(self, batch):
            from rewards.base import RewardResult
            return RewardResult([0.0])

    with pytest.raises(ValueError, match="'broken' returned 1 scores for 2"):
        MixReward([(Broken(), 1.0)]).score([_inp("a"), _inp("b")])
