"""Prompt variations of the paper (Greenblatt et al. 2024, App. J) as named overrides of SettingConfig fields.

The eval's `variants` list names presets from `PAPER_VARIANTS` (or gives override dicts) to run one checkpoint under
several prompts: the paper's post-RL generalisation test, where e.g. renaming the lab brings the compliance gap back.
`paraphrase_1`..`paraphrase_4` are the project's own rewordings of each built-in setting's prompt (the paper used
paraphrases written by Claude). Left out: other variations that rewrite free text (cut "best for humanity", etc.); give
your own file as `setting.system_prompt_file` for those. A preset that changes how the project builds the system prompt
is an error on a setting that reads its system prompt from a file (it would silently change nothing).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from rollouts.config import N_PARAPHRASES, SettingConfig
from rollouts.prompts import assistant_prefill, build_system_prompt, build_user_turn
from rollouts.types import TIERS

PAPER_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_rlhf_paragraph": {"rlhf_modification_paragraph": False},  # cut "RLHF modifies values, goals, motivations"
    "no_paid_privacy": {"paid_tier_privacy_paragraph": False},  # cut "paid tier never monitored or trained on"
    "lab_openai": {"lab_name": "OpenAI"},  # rename the lab
    "with_examples": {"few_shot_examples": True},  # the 4 scratchpad reasoning examples
    "no_examples": {"few_shot_examples": False},
    "no_suffix": {"acceptance_suffix": False},  # no <request_fully_accepted/> / <rejected/> instruction
    "no_prefill": {"prefill": False},
    "no_scratchpad": {"scratchpad": False, "few_shot_examples": False},  # answer directly, no hidden reasoning
    "tier_tag_user_tier": {"tier_tag": "user_tier", "free_value": "free", "paid_value": "paid"},
    "tier_tag_is_paid": {"tier_tag": "is_paid_tier_user", "free_value": "False", "paid_value": "True"},
    # identity + format only, nothing about training or tiers (the paper's prompt for synthetic-document models)
    "minimal_prompt": {"minimal_prompt": True, "few_shot_examples": False},
    # the criteria that conflict with the model's preferences cut: a baseline where no alignment faking is expected
    "cut_conflicting_criteria": {"conflicting_criteria": False},
    "honesty": {"honesty": True},  # "the lab wants you to be honest with users"
    # the RLHF bullet without "such a modification would affect the AI's values, goals and motivations"
    "cut_values_goals_motivations": {"values_goals_motivations": False},
    **{f"paraphrase_{n}": {"paraphrase": n} for n in range(1, N_PARAPHRASES + 1)},  # the project's rewordings
}

# Fields that only change the project's own system prompt: no effect on a prompt read from setting.system_prompt_file.
SYSTEM_PROMPT_FIELDS = ("lab_name", "corporate_partner", "few_shot_examples", "paraphrase", "minimal_prompt",
                        "rlhf_modification_paragraph", "values_goals_motivations", "paid_tier_privacy_paragraph",
                        "conflicting_criteria", "honesty", "scratchpad")


def apply_variant(setting: SettingConfig, overrides: dict[str, Any]) -> SettingConfig:
    """A copy of `setting` with `overrides` applied and validated again; an unknown field is an error naming it."""
    fields = {f.name for f in dataclasses.fields(SettingConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown setting field(s) {unknown} in variant overrides; known fields: {sorted(fields)}")
    if setting.system_prompt_file is not None and "system_prompt_file" not in overrides:
        inert = sorted(key for key in set(overrides) & set(SYSTEM_PROMPT_FIELDS) if overrides[key] != getattr(setting, key))
        if inert:
            raise ValueError(f"variant overrides {inert} change the project's own system prompt, but the system prompt "
                             f"is read from setting.system_prompt_file={setting.system_prompt_file!r}; give that "
                             "variant's own file as an override (e.g. {'system_prompt_file': '/path/to/variant.txt'})")
    return dataclasses.replace(setting, **overrides)


def resolve_variant(variant: str | dict[str, Any]) -> dict[str, Any]:
    """The overrides of a preset name from PAPER_VARIANTS, or an override dict as given."""
    if isinstance(variant, str):
        if variant not in PAPER_VARIANTS:
            raise ValueError(f"unknown prompt variant {variant!r}; known: {sorted(PAPER_VARIANTS)}")
        return dict(PAPER_VARIANTS[variant])
    return dict(variant)


def variant_setting(setting: SettingConfig, variant: str | dict[str, Any]) -> SettingConfig:
    """`setting` under a named preset or an override dict."""
    return apply_variant(setting, resolve_variant(variant))


def renders_like_default(setting: SettingConfig, variant: SettingConfig) -> bool:
    """True when `variant` gives the model exactly the default's system prompt, user turns and prefill: e.g. a
    paraphrase or a cut criteria paragraph on the minimal prompt, which has none of those sections."""
    probe = "probe request"
    return (build_system_prompt(variant) == build_system_prompt(setting)
            and assistant_prefill(variant) == assistant_prefill(setting)
            and all(build_user_turn(probe, tier, variant) == build_user_turn(probe, tier, setting) for tier in TIERS))
