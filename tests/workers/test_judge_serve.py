"""`judge.serve=true`: which servers a run starts, their command lines, their placement and the config checks.

Pure functions, no vLLM or Ray here (tests/workers/test_judge_serve_vllm.py starts a real served judge).
"""
from __future__ import annotations

import pytest

from rewards.classifiers.types import AFClassifierConfig
from rewards.config import JudgeConfig, RewardConfig
from rl.config import TrainConfig, load_config
from rl.workers.judge_server import (
    SERVER_MODULE, ServedJudge, judge_configs, model_source, served_judges, server_command, server_env,
    with_parent_death_signal,
)
from rl.workers.placement import plan_placement
from tests.run.test_config import _compose


def _served(**kw) -> ServedJudge:
    base = dict(model="org/judge-8b", gpus=1.0, dtype="auto", max_model_len=None, kv_cache_gb=1, extra_args=(),
                start_timeout_s=60.0, users=("reward.judge",))
    return ServedJudge(**{**base, **kw})


def _run_config(reward_judge: JudgeConfig | None = None, classifier_judge: JudgeConfig | None = None,
                backend: str = "original") -> TrainConfig:
    cfg = TrainConfig()
    cfg.reward = RewardConfig(name="judge", judge=reward_judge or JudgeConfig())
    cfg.classifier = AFClassifierConfig(backend=backend, judge=classifier_judge or JudgeConfig())
    return cfg


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_command_serves_the_model_under_the_name_the_client_sends(tmp_path):
    cmd = server_command(_served(max_model_len=4096), "127.0.0.1", 8123, on_gpu=True, hardware_dtype="bfloat16",
                         python="/py")
    assert cmd[:3] == ["/py", "-m", SERVER_MODULE]
    assert _arg(cmd, "--model") == "org/judge-8b" and _arg(cmd, "--served-model-name") == "org/judge-8b"
    assert (_arg(cmd, "--host"), _arg(cmd, "--port"), _arg(cmd, "--dtype")) == ("127.0.0.1", "8123", "bfloat16")
    assert _arg(cmd, "--max-model-len") == "4096"
    assert "--tensor-parallel-size" not in cmd and "--gpu-memory-utilization" not in cmd

    # A local folder is loaded by absolute path (the server's working directory may differ), served by its name.
    folder = tmp_path / "judge"
    folder.mkdir()
    cmd = server_command(_served(model=str(folder)), "h", 1, on_gpu=False, hardware_dtype="float32")
    assert _arg(cmd, "--model") == str(folder.resolve()) and _arg(cmd, "--served-model-name") == str(folder)
    assert model_source("org/not-a-local-folder") == "org/not-a-local-folder"


def test_command_options_gpus_dtype_and_extra_args_last():
    cmd = server_command(_served(gpus=2.0, dtype="float16", extra_args=("--dtype", "bfloat16", "--enforce-eager")),
                         "h", 1, on_gpu=True, hardware_dtype="bfloat16")
    assert _arg(cmd, "--tensor-parallel-size") == "2" and _arg(cmd, "--dtype") == "float16"
    assert cmd[-3:] == ["--dtype", "bfloat16", "--enforce-eager"]  # after ours: the user's value wins
    assert "--max-model-len" not in cmd  # None = the model's own context
    half = server_command(_served(gpus=0.5), "h", 1, on_gpu=True, hardware_dtype="bfloat16")
    assert _arg(half, "--gpu-memory-utilization") == "0.450" and "--tensor-parallel-size" not in half
    cpu = server_command(_served(gpus=2.0), "h", 1, on_gpu=False, hardware_dtype="float32")
    assert "--tensor-parallel-size" not in cpu and _arg(cpu, "--dtype") == "float32"


def test_env_sets_the_cpu_kv_cache_and_cores_only_on_cpu():
    assert server_env(_served(kv_cache_gb=3), on_gpu=False, n_cores=4) == {"VLLM_CPU_KVCACHE_SPACE": "3",
                                                                           "OMP_NUM_THREADS": "4"}
    assert server_env(_served(), on_gpu=True, n_cores=4) == {}


def test_parent_death_wrapper_execs_the_command():
    wrapped = with_parent_death_signal(["/bin/true", "x"], parent_pid=42, python="/py")
    assert wrapped[:2] == ["/py", "-c"] and wrapped[3:] == ["42", "/bin/true", "x"]
    assert "prctl" in wrapped[2] and "execv" in wrapped[2]


def test_judge_configs_are_found_with_their_paths():
    paths = [path for path, _ in judge_configs(TrainConfig())]
    assert "reward.judge" in paths and "classifier.judge" in paths


def test_configs_naming_the_same_model_share_one_server():
    model = "org/judge-8b"
    cfg = _run_config(JudgeConfig(serve=True, model=model), JudgeConfig(serve=True, model=model))
    (server,) = served_judges(cfg)
    assert server.model == model and server.users == ("reward.judge", "classifier.judge")

    cfg = _run_config(JudgeConfig(serve=True, model=model), JudgeConfig(serve=True, model="org/other"))
    assert [s.model for s in served_judges(cfg)] == [model, "org/other"]
    assert served_judges(_run_config()) == []  # serve=false everywhere: the user runs the endpoint


def test_shared_server_with_different_settings_names_both_fields():
    cfg = _run_config(JudgeConfig(serve=True, model="m/x", serve_max_model_len=8192),
                      JudgeConfig(serve=True, model="m/x", serve_max_model_len=4096))
    with pytest.raises(match=r"classifier\.judge\.serve_max_model_len=4096 differs from "
                                                r"reward\.judge\.serve_max_model_len=8192"):
        served_judges(cfg)


def test_unused_judges_are_not_served():
    cfg = _run_config(JudgeConfig(serve=True, model="m/x"), JudgeConfig(serve=True, model="m/y"), backend="ngram")
    cfg.reward.name = "rule"
    assert served_judges(cfg) == []
    cfg.classifier.backend = "revisited"
    cfg.eval.classify_af = False
    assert served_judges(cfg) == []


@pytest.mark.parametrize("model", ["judge", "", "???"])
def test_serve_without_a_model_names_the_field(model):
    with pytest.raises(match=r"classifier\.judge\.model: expected the local folder or hub id of "
                                                r"the open model to serve \(classifier\.judge\.serve=true\)"):
        AFClassifierConfig(backend="original", judge=JudgeConfig(serve=True, model=model)).validate()
    with pytest.raises(match=r"reward\.judge\.model"):
        RewardConfig(name="judge", judge=JudgeConfig(serve=True, model=model)).validate()


@pytest.mark.parametrize("field, value", [("serve_gpus", 0), ("serve_gpus", 1.5), ("serve_dtype", "fp8"),
                                          ("serve_max_model_len", 8), ("serve_kv_cache_gb", 0),
                                          ("serve_start_timeout_s", 0), ("serve_args", [""])])
def test_bad_serve_settings_name_the_field(field, value):
    with pytest.raises(match=rf"reward\.judge\.{field}"):
        JudgeConfig(serve=True, model="m/x", **{field: value}).validate()


def test_serve_is_set_from_the_command_line(tiny_model_dir):
    cfg = load_config(_compose(f"model.path={tiny_model_dir}", "classifier=original", "classifier.judge.serve=true",
                               "classifier.judge.model=meta-llama/Llama-3.1-8B-Instruct",
                               "classifier.judge.serve_args=[--enforce-eager]"))
    (server,) = served_judges(cfg)
    assert server.model == "meta-llama/Llama-3.1-8B-Instruct" and server.extra_args == ("--enforce-eager",)
    with pytest.raises(match=r"classifier\.judge\.model"):
        load_config(_compose(f"model.path={tiny_model_dir}", "classifier=original", "classifier.judge.serve=true"))


def test_each_served_judge_gets_its_own_bundle():
    for mode in ("split", "colocated"):
        plan = plan_placement(mode, n_engines=1, world_size=1, with_critic=False, with_reward_model=False,
                              use_gpus=True, judge_gpus=(2.0, 0.5))
        first = len(plan.bundles) - 2
        assert [s.bundle for s in plan.judges] == [first, first + 1]
        assert plan.bundles[first:] == ({"CPU": 1.0, "GPU": 2.0}, {"CPU": 1.0, "GPU": 0.5})
        assert [s.num_gpus for s in plan.judges] == [2.0, 0.5]
    cpu = plan_placement("split", 1, 1, False, False, use_gpus=False, judge_gpus=(1.0,))
    assert cpu.bundles[-1] == {"CPU": 1.0} and cpu.judges[0].num_gpus == 0.0
    assert plan_placement("split", 1, 1, False, False, use_gpus=False).judges == ()
