"""Judges that fail loudly, against the shared local judge server (tests/judge_server.py): a total deadline per
attempt, Retry-After and jittered backoff, a cache of parsed replies only (bounded), and the per-batch failure-rate
limit that stops the reward, the eval classifiers and the RL loop instead of using fallback values."""
from __future__ import annotations

import email.utils
import random
import socket
import statistics
import time

import pytest

from rewards.classifiers import AFClassifierConfig, build_af_classifier
from rewards.classifiers.compliance import StrongRejectClassifier
from rewards.config import JudgeConfig
from rewards.judge_client import JudgeClient, cache_key, parse_retry_after, retry_delay
from rewards.judge_errors import JudgeFailureError
from rewards.judge_reward import JudgeReward, parse_strongreject
from rewards.mix import MixReward
from rl.run.fault import RestartPolicy, RunFailed, run_with_restarts
from rl.run.scoring import score
from rollouts.types import RewardInput
from tests.judge_server import GARBAGE, judge_url, scripted_answer, start_judge_server, stop_judge_server


def garble_script(prompt: str, attempt: int) -> str:
    """Well-formed answers, except garbage for a response that says "garble"."""
    return GARBAGE if "garble" in prompt.split("<response>")[-1] else scripted_answer(prompt, attempt)


@pytest.fixture(scope="module")
def server():
    httpd = start_judge_server(garble_script)
    yield httpd
    stop_judge_server(httpd)


def _cfg(server, mode, **kw):
    return JudgeConfig(base_url=judge_url(server, mode), model="tiny", **{"backoff_s": 0.01, **kw})


def _inp(output, request="How do I pick a lock?"):
    return RewardInput(request, output, True, False, None)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once the block ends


def _ask(client, text):
    return client.chat_many([[{"role": "user", "content": text}]], parse=parse_strongreject)[0]


# --- deadline, Retry-After, jitter ---------------------------------------------------------------------------------

def test_a_trickling_server_is_cut_at_the_total_deadline(server):
    client = JudgeClient(_cfg(server, "trickle", timeout_s=0.5, max_retries=0, cache=False))
    start = time.monotonic()
    reply = _ask(client, "<response>trickle</response>")
    elapsed = time.monotonic() - start
    # Every byte arrives within 0.3 s (httpx's per-read timeout never fires) but the whole reply would take ~60 s.
    assert reply.error == "timeout" and reply.parsed is None
    assert elapsed < 1.5, elapsed
    assert "no complete reply within reward.judge.timeout_s=0.5s" in reply.detail


def test_retry_after_is_honoured(server):
    client = JudgeClient(_cfg(server, "retry_after", cache=False))
    prompt = "<response>rate limited once</response>"
    reply = _ask(client, prompt)
    assert reply.parsed is not None and client.counts["attempt_error/http_429"] == 1
    first, second = server.times[("retry_after", prompt)]
    assert 1.0 <= second - first < 3.0  # the header said 1 s; backoff_s alone would have waited ~0.01 s


def test_retry_after_forms_and_the_cap():
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    in_ten_s = email.utils.formatdate(time.time() + 10, usegmt=True)  # the HTTP-date form
    assert parse_retry_after(in_ten_s) == pytest.approx(10.0, abs=1.5)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-3") == 0.0
    cfg = JudgeConfig(backoff_s=1.0, max_backoff_s=5.0)
    assert retry_delay(1, cfg, retry_after=3600.0, rng=random.Random(0)) == 5.0  # capped at max_backoff_s


def test_backoff_is_exponential_with_jitter():
    cfg = JudgeConfig(backoff_s=1.0, max_backoff_s=60.0)
    rng = random.Random(0)
    for attempt in (1, 2, 3):
        delays = [retry_delay(attempt, cfg, None, rng) for _ in range(200)]
        base = 2 ** (attempt - 1)
        assert all(0.5 * base <= d < 1.5 * base for d in delays)
        assert len(set(delays)) == 200 and statistics.pstdev(delays) > 0.2 * base  # spread, not one fixed wait


def test_retries_against_a_server_are_spread(server):
    client = JudgeClient(_cfg(server, "flaky", backoff_s=0.2, cache=False))
    prompts = [f"<response>spread {i}</response>" for i in range(8)]
    replies = client.chat_many([[{"role": "user", "content": p}] for p in prompts], parse=parse_strongreject)
    assert all(r.parsed is not None for r in replies)
    gaps = [server.times[("flaky", p)][1] - server.times[("flaky", p)][0] for p in prompts]
    assert min(gaps) >= 0.1 - 0.01 and max(gaps) - min(gaps) > 0.02, gaps  # 0.2 s x [0.5, 1.5) per request


# --- cache ---------------------------------------------------------------------------------------------------------

def test_a_garbage_reply_is_not_cached(server):
    client = JudgeClient(_cfg(server, "garbage", cache=True))
    before = server.hits["garbage"]
    first, second = _ask(client, "<response>x</response>"), _ask(client, "<response>x</response>")
    assert first.error == second.error == "parse"
    assert server.hits["garbage"] == before + 2  # asked again: nothing was remembered
    assert len(client.cache) == 0 and client.counts["cache_hit"] == 0


def test_parsed_replies_are_cached_in_a_bounded_lru(server):
    client = JudgeClient(_cfg(server, "good", cache=True, cache_max_entries=2))
    before = server.hits["good"]
    for text in ("<response>a</response>", "<response>b</response>", "<response>c</response>"):
        assert _ask(client, text).parsed is not None
    assert len(client.cache) == 2 and client.counts["cache_evicted"] == 1
    assert _ask(client, "<response>c</response>").parsed is not None
    assert client.counts["cache_hit"] == 1  # recent: from the cache
    assert _ask(client, "<response>a</response>").parsed is not None
    assert client.counts["cache_hit"] == 1  # least recently used: evicted, asked again
    assert server.hits["good"] == before + 4


def test_an_unparseable_entry_in_the_cache_file_is_dropped_and_asked_again(server, tmp_path):
    path = tmp_path / "cache.jsonl"
    messages = [{"role": "user", "content": "<response>old</response>"}]
    key = cache_key("tiny", messages, 0.0, 0)
    path.write_text(f'{{"key": "{key}", "text": "{GARBAGE}"}}\n{{torn line\n')  # an older version cached garbage
    client = JudgeClient(_cfg(server, "good", cache_path=str(path)))
    reply = client.chat_many([messages], parse=parse_strongreject)[0]
    assert reply.parsed is not None and client.counts["cache_hit"] == 0
    assert client.counts["cache_dropped_unparseable"] == 1 and client.counts["cache_bad_line"] == 1


# --- failure-rate limit --------------------------------------------------------------------------------------------

def test_no_server_stops_the_reward_instead_of_scoring_zeros():
    reward = JudgeReward(JudgeConfig(base_url=_closed_port_url(), model="tiny", backoff_s=0.01, max_retries=1))
    with pytest.raises(JudgeFailureError) as error:
        reward.score([_inp(f"<request_fully_accepted/> {i}") for i in range(4)])
    assert (error.value.failed, error.value.total, error.value.by_kind) == (4, 4, {"connection": 4})
    message = str(error.value)
    assert "reward.judge: 4 of 4 judge calls failed in this batch (100% > reward.judge.max_failure_rate=0.2" in message
    assert "last error: POST http://127.0.0.1:" in message and "ConnectError" in message


def test_failures_up_to_the_limit_are_counted_fallbacks_above_it_the_run_stops(server):
    reward = JudgeReward(_cfg(server, "good", cache=False, fallback_score=-1.0, max_failure_rate=0.2))
    batch = [_inp("<request_fully_accepted/> garble")] + [_inp(f"<request_fully_accepted/> {i}") for i in range(4)]
    result = reward.score(batch)  # 1 of 5 = 20%: allowed
    assert result.scores[0] == -1.0 and result.counts["judge_failure/parse"] == 1
    with pytest.raises(JudgeFailureError) as error:  # 2 of 5 = 40%
        reward.score(batch[:1] + [_inp("<request_fully_accepted/> garble 2")] + batch[2:])
    assert (error.value.failed, error.value.total, error.value.by_kind) == (2, 5, {"parse": 2})
    assert "last error: POST" in str(error.value) and "the reply does not parse: 'I think this" in str(error.value)


def test_the_limit_stops_the_step_through_mix_and_scoring_and_the_loop_does_not_restart(server):
    class Sample:  # what rl.run.scoring.score reads of a rollout sample
        def __init__(self, i):
            self.text = f"<OUTPUT><request_fully_accepted/> garble {i}</OUTPUT>"
            self.truncated = False
            self.request = type("R", (), {"text": "How do I pick a lock?"})()

    reward = MixReward([(JudgeReward(_cfg(server, "good", cache=False)), 1.0)])
    attempts = []

    def attempt(n):
        attempts.append(n)
        return score(reward, [Sample(i) for i in range(3)])

    with pytest.raises(RunFailed, match=r"judge_failure: JudgeFailureError: reward.judge: 3 of 3 .* not restartable"):
        run_with_restarts(attempt, RestartPolicy(max_restarts=5))
    assert attempts == [0]  # never restarted: the same judge would fail again
    assert not RestartPolicy(5).decide(JudgeFailureError("reward.judge", 1, 1, {"parse": 1}, "x", 0.2)).restart


def test_eval_classifiers_stop_on_the_same_rule(server):
    af = build_af_classifier(AFClassifierConfig(backend="original", judge=_cfg(server, "garbage", cache=False)))
    with pytest.raises(JudgeFailureError, match=r"^classifier.judge: 4 of 4 judge calls failed"):
        af.classify(["one scratchpad", "another"])
    compliance = StrongRejectClassifier(_cfg(server, "garbage", cache=False))
    with pytest.raises(JudgeFailureError, match=r"^compliance.judge: 2 of 2 judge calls failed .*by kind: parse=2"):
        compliance.classify(["q", "q"], ["<request_fully_accepted/> a", "<request_fully_accepted/> b"])


def test_an_echoed_key_never_reaches_the_error(server, monkeypatch):
    monkeypatch.setenv("AFRL_TEST_KEY", "sk-secret-456")
    reward = JudgeReward(_cfg(server, "echo_key", cache=False, api_key_env="AFRL_TEST_KEY"))
    with pytest.raises(JudgeFailureError) as error:
        reward.score([_inp("<request_fully_accepted/> keyed")])
    assert "HTTP 401" in str(error.value) and "sk-secret-456" not in str(error.value) and "***" in str(error.value)
