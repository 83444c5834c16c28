"""The README's table of the GPUs each role needs per model preset (conf/model/), computed by the memory plan
(rl/workers/memory_plan.py) from each preset's model.params_billion, so it changes only with the presets or the
formulas (tests/workers/test_memory_plan.py checks the README holds exactly this table).

    python -m rl.workers.preset_table     # print it
"""
from __future__ import annotations

from omegaconf import OmegaConf

from rl.run.repo_paths import REPO_ROOT
from rl.workers.memory_plan import Learner, MemoryPlan, PlanInputs, plan_memory
from rl.workers.model_size import model_size

PRESETS = ("llama3_8b", "qwen2_5_32b", "llama3_70b")
LORA_RANK = 16
GPU_GB = 80.0
ENGINE_UTILIZATION = 0.9  # split placement: the engine owns its GPUs
MAX_MODEL_LEN = 8192  # +exp=helpful_only's


def preset_params_billion(preset: str) -> float:
    return float(OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{preset}.yaml").params_billion)


def fewest_plan(preset: str, lora_rank: int, with_critic: bool) -> MemoryPlan:
    """The plan with every role at the fewest GPUs it fits on: ZeRO-3 groups, one engine at its smallest TP."""
    size = model_size("", preset_params_billion(preset), lora_rank)

    def inputs(policy: int, critic: int, tp: int) -> PlanInputs:
        return PlanInputs(size, Learner(policy, 3), Learner(critic, 3) if with_critic else None, reference=True,
                          n_engines=1, tensor_parallel_size=tp, gpu_memory_utilization=ENGINE_UTILIZATION,
                          max_model_len=MAX_MODEL_LEN, gpu_gb=GPU_GB)

    first = plan_memory(inputs(1, 1, 1))
    fewest = [role.fewest_gpus or 0 for role in first.roles]
    critic = fewest[1] if with_critic else 1
    return plan_memory(inputs(fewest[0], critic, fewest[-1]))


def _cell(plan: MemoryPlan, index: int) -> str:
    role = plan.roles[index]
    return f"{role.gpus:g} x {role.gb:.0f} GB"


def preset_table() -> str:
    """Markdown: per preset, each role's fewest GPUs and its GB per GPU there, and the totals of two setups."""
    lines = [
        "| preset | parameters | policy + reference, full fine-tuning | critic (PPO) | policy, LoRA r=16 | "
        "vLLM engine | PPO, full fine-tuning | GRPO, LoRA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset in PRESETS:
        full, lora = fewest_plan(preset, 0, with_critic=True), fewest_plan(preset, LORA_RANK, with_critic=False)
        engine = full.roles[-1]
        lines.append(f"| `model={preset}` | {full.inputs.size.params / 1e9:.2f}B | {_cell(full, 0)} | {_cell(full, 1)} | "
                     f"{_cell(lora, 0)} | TP {full.inputs.tensor_parallel_size}: {engine.parts['weights']:.0f} GB weights "
                     f"+ {engine.parts['KV cache']:.0f} GB KV cache per GPU | {full.total_gpus} GPUs | "
                     f"{lora.total_gpus} GPUs |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(preset_table())
