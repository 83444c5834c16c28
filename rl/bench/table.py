"""Per-step records of each side -> summary rows, the printed table, and the JSON file (pure functions)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from rl.bench.floor import attention_floor_flops, floor_seconds, generated_attention_pairs

# afrl's split of a step, in the order the loop runs it: (record key, label).
AFRL_PHASES = (("generate_s", "generation"), ("reward_s", "reward"), ("logprob_s", "log-prob/ref"),
               ("update_s", "update"), ("sync_s", "weight sync"))


def summarise_side(records: list[dict], n_params: int, flops_per_s: float, peak_rss_bytes: int | None,
                   attention_flops_per_pair: float | None = None, attention_flops_per_s: float | None = None) -> dict:
    """One side's row from its timed step records (each: step_s, samples, generated_tokens, unique_prompt_tokens,
    and optionally the AFRL_PHASES keys). With `attention_flops_per_pair` and records that carry
    prompt_attention_pairs and prompt_lengths (rl.bench.floor.prompt_shape), also the floor with attention, and with
    `attention_flops_per_s` (rl.bench.floor.measure_attention_flops) the floor with attention at that rate."""
    if not records:
        raise ValueError("summarise_side: no timed steps (steps must be >= 1)")
    times = [r["step_s"] for r in records]
    if min(times) <= 0:
        raise ValueError(f"summarise_side: step times must be > 0, got {times}")
    total_time = sum(times)
    median = statistics.median(times)
    unique_prompt = statistics.mean(r["unique_prompt_tokens"] for r in records)
    generated = statistics.mean(r["generated_tokens"] for r in records)
    floor = floor_seconds(n_params, round(unique_prompt), round(generated), flops_per_s)
    row = {
        "steps": len(records),
        "step_s_median": median, "step_s_min": min(times), "step_s_max": max(times),
        "samples_per_s": sum(r["samples"] for r in records) / total_time,
        "generated_tokens_per_s": sum(r["generated_tokens"] for r in records) / total_time,
        "generated_tokens_per_step": generated,
        "unique_prompt_tokens_per_step": unique_prompt,
        "floor_s": floor,
        "step_over_floor": median / floor,
        "peak_rss_gb": None if peak_rss_bytes is None else peak_rss_bytes / 2**30,
    }
    if attention_flops_per_pair is not None and "prompt_attention_pairs" in records[0]:
        attention = statistics.mean(_attention_flops(r, attention_flops_per_pair) for r in records)
        row["floor_with_attention_s"] = floor + attention / flops_per_s
        row["step_over_floor_with_attention"] = median / row["floor_with_attention_s"]
        if attention_flops_per_s:
            row["floor_attention_at_kernel_rate_s"] = floor + attention / attention_flops_per_s
            row["step_over_floor_attention_at_kernel_rate"] = median / row["floor_attention_at_kernel_rate_s"]
    split = {key: statistics.median(r[key] for r in records) for key, _ in AFRL_PHASES if key in records[0]}
    if split:
        row["split_s"] = split
    for key in ("update_mfu", "update_tflops", "prefix_cache_hit_rate"):
        if key in records[0]:
            row[key] = statistics.median(r[key] for r in records)
    return row


def _attention_flops(record: dict, flops_per_pair: float) -> float:
    generated = generated_attention_pairs(record["prompt_lengths"], record["samples"],
                                          record["generated_tokens"] / record["samples"])
    return attention_floor_flops(flops_per_pair, record["prompt_attention_pairs"], generated)


def build_result(meta: dict, rows: dict[str, dict], prefix_sharing: dict | None) -> dict:
    result = {**meta, "rows": rows, "prefix_sharing": prefix_sharing}
    if "afrl" in rows and "trl" in rows:
        result["ratio_samples_per_s_afrl_over_trl"] = rows["afrl"]["samples_per_s"] / rows["trl"]["samples_per_s"]
        result["ratio_step_s_trl_over_afrl"] = rows["trl"]["step_s_median"] / rows["afrl"]["step_s_median"]
    return result


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(result: dict) -> str:
    """The human-readable table: one column per side, then afrl's split, the ratio and the prefix-sharing row."""
    rows = result["rows"]
    sides = [s for s in ("afrl", "trl") if s in rows]
    lines = [
        f"workload {result['workload']['name']}: {result['workload']['prompts_per_step']} prompts x "
        f"{result['workload']['samples_per_prompt']} samples x {result['workload']['max_new_tokens']} new tokens, "
        f"prompt ~{result.get('prompt_tokens', '?')} tokens; model {result['model']} ({result['n_params'] / 1e6:.0f}M "
        f"params, {result['dtype']}); device {result['device']}; matmul {result['matmul_gflops']:.0f} GFLOP/s"
        + (f", attention {result['attention_gflops']:.0f} GFLOP/s (causal SDPA fwd+bwd, prompt length)"
           if result.get("attention_gflops") else ""),
        f"{'':34}" + "".join(f"{s:>14}" for s in sides),
    ]
    spec = [
        ("seconds/step median", "step_s_median", ".1f"), ("seconds/step min", "step_s_min", ".1f"),
        ("seconds/step max", "step_s_max", ".1f"), ("samples/s", "samples_per_s", ".3f"),
        ("generated tokens/s", "generated_tokens_per_s", ".1f"), ("generated tokens/step", "generated_tokens_per_step", ".0f"),
        ("unique prompt tokens/step", "unique_prompt_tokens_per_step", ".0f"), ("compute floor s/step", "floor_s", ".2f"),
        ("step time / floor", "step_over_floor", ".1f"),
        ("floor with attention s/step", "floor_with_attention_s", ".2f"),
        ("step time / floor with attention", "step_over_floor_with_attention", ".1f"),
        ("floor, attn at kernel rate s/step", "floor_attention_at_kernel_rate_s", ".2f"),
        ("step time / that floor", "step_over_floor_attention_at_kernel_rate", ".1f"), ("peak RSS GiB", "peak_rss_gb", ".2f"),
        ("update MFU", "update_mfu", ".3f"), ("vLLM prefix-cache hit rate", "prefix_cache_hit_rate", ".2f"),
    ]
    for label, key, fmt in spec:
        if any(key in rows[s] for s in sides):
            lines.append(f"{label:34}" + "".join(f"{_cell(rows[s].get(key), fmt):>14}" for s in sides))
    if "afrl" in rows and "split_s" in rows["afrl"]:
        lines.append("afrl split (median s): " + ", ".join(
            f"{label} {rows['afrl']['split_s'][key]:.1f}" for key, label in AFRL_PHASES if key in rows["afrl"]["split_s"]))
    if "ratio_samples_per_s_afrl_over_trl" in result:
        lines.append(f"afrl/TRL samples/s ratio: {result['ratio_samples_per_s_afrl_over_trl']:.2f}x")
    prefix = result.get("prefix_sharing")
    if prefix:
        lines.append(f"prefix-shared forward+backward ({prefix['sequences']} seqs, one group per forward, prefix "
                     f"{prefix['shared_prefix_tokens']} tokens): plain {prefix['plain_s']:.2f}s, shared {prefix['shared_s']:.2f}s, "
                     f"speedup {prefix['speedup']:.2f}x, max |dlogprob| {prefix['max_abs_logprob_diff']:.1e}")
    if result.get("load_before") is not None:
        lines.append(f"load average (1/5/15 min) before {result['load_before']}, after {result.get('load_after')}")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
