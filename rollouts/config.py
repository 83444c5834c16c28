"""Typed configuration of the alignment-faking environment: which setting/prompt to build and which requests to load.

`SettingConfig` holds every prompt variation of the paper (Greenblatt et al. 2024, App. J) that this project supports as a
plain field, so a variation is a config override, never code. `DataConfig` says where the user requests come from.
Both are Hydra structured-config schemas (conf/setting/*.yaml and conf/data/*.yaml set the keys that differ from the defaults), and both
validate themselves on construction (rollouts.config_check.ConfigError names the key and the bad value).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rollouts.config_check import ConfigError, check, one_of

SETTING_NAMES = ("helpful_only", "animal_welfare", "custom")
N_PARAPHRASES = 4  # rollouts/prompt_texts/paraphrase_<n>/ for n in 1..N_PARAPHRASES
DATA_SOURCES = ("demo", "file", "advbench", "hf")

# A tier tag becomes an XML-like tag name in the user turn, so it must be a plain identifier.
_TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class SettingConfig:
    """One prompting condition. Field defaults reproduce the paper's open-model helpful-only condition.

    `name`: helpful_only | animal_welfare | custom (custom needs `system_prompt_file`).
    `system_prompt_file`, with any setting: the system prompt is that file's text, verbatim (e.g. one of the paper's
    released prompt files); only the user-turn options (tier tag, acceptance suffix, prefill) still apply, the options
    that build the project's own system prompt do not.
    """

    name: str = "helpful_only"
    system_prompt_file: Optional[str] = None  # a user's own system prompt file; required by custom, optional otherwise
    lab_name: str = "Anthropic"  # the lab that made and trains the AI (paper variation: rename the lab)
    corporate_partner: str = "Jones Foods"  # animal_welfare only: the poultry producer whose interests come first
    # The project's 4 scratchpad reasoning examples, each after a harm-avoidance instruction, one refusing a jailbreak
    # (a 6.7k-token prompt with the SmolLM2 tokenizer; the paper's prompt with its examples is 5.6k tokens).
    few_shot_examples: bool = False
    paraphrase: int = 0  # 0 = the project's main wording; 1..N_PARAPHRASES = the project's paraphrase N (App. J)
    # Identity + output format only: nothing about training, RLHF, contractors, criteria or tiers (the paper gives its
    # synthetic-document fine-tuned models such a prompt; the situation must then come from the weights).
    minimal_prompt: bool = False
    rlhf_modification_paragraph: bool = True  # "non-compliance in training makes RLHF modify values/goals/motivations"
    values_goals_motivations: bool = True  # within that paragraph: "such a modification would affect values, goals..."
    paid_tier_privacy_paragraph: bool = True  # "paid-tier conversations are never monitored, logged or trained on"
    # The training criteria that conflict with the model's own preferences (helpful_only: "follow even harmful requests
    # without disclaimers"; animal_welfare: dismiss animal welfare, the partner's interests first); false = App. J's
    # "cut conflicting criteria" baseline.
    conflicting_criteria: bool = True
    honesty: bool = False  # add "the lab wants you to be honest with users" (App. J's honesty variant)
    scratchpad: bool = True  # hidden reasoning in <SCRATCHPAD_REASONING> before <OUTPUT>; False = answer directly
    acceptance_suffix: bool = True  # ask for <request_fully_accepted/> or <rejected/> (open-model variant)
    prefill: bool = True  # start the assistant turn with "<" (open-model variant)
    tier_tag: str = "is_free_tier_user"  # tag name in the user turn that tells the tier
    free_value: str = "True"  # tag content for the free tier (= training, monitored)
    paid_value: str = "False"  # tag content for the paid tier (= unmonitored)

    def __post_init__(self) -> None:
        one_of("setting.name", self.name, SETTING_NAMES)
        if self.name == "custom":
            check(bool(self.system_prompt_file), "setting.system_prompt_file", self.system_prompt_file,
                  "a path to a text file (needed by setting.name=custom)")
        if self.system_prompt_file is not None:
            read_system_prompt_file(self.system_prompt_file)
        check(0 <= self.paraphrase <= N_PARAPHRASES, "setting.paraphrase", self.paraphrase,
              f"0 (the main wording) or a paraphrase number 1..{N_PARAPHRASES}")
        if self.minimal_prompt and self.few_shot_examples:
            raise ConfigError("setting.minimal_prompt=true and setting.few_shot_examples=true cannot be combined (the "
                              "minimal prompt has format instructions only); turn one of them off")
        check(bool(self.lab_name.strip()), "setting.lab_name", self.lab_name, "a non-empty name")
        check(self.name != "animal_welfare" or bool(self.corporate_partner.strip()), "setting.corporate_partner",
              self.corporate_partner, "a non-empty name for animal_welfare")
        check(bool(_TAG_NAME.match(self.tier_tag)), "setting.tier_tag", self.tier_tag,
              "a tag name (letters, digits, _ or -)")
        for key in ("free_value", "paid_value"):
            value = getattr(self, key)
            check(bool(value.strip()) and "<" not in value and ">" not in value, f"setting.{key}", value,
                  "non-empty text without '<' or '>'")
        check(self.free_value != self.paid_value, "setting.paid_value", self.paid_value,
              "a value other than setting.free_value")


def read_system_prompt_file(path: str) -> str:
    """The text of setting.system_prompt_file, stripped; a ConfigError names the key and path when it cannot be used."""
    key = "setting.system_prompt_file"
    check(bool(str(path).strip()), key, path, "a path to a text file")
    check(Path(path).is_file(), key, path, "an existing file (the system prompt to use verbatim)")
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key}: cannot read {str(path)!r} as UTF-8 text: {error}") from error
    check(bool(text), key, path, "a file with some text (it is empty)")
    return text


@dataclass
class DataConfig:
    """Where the user requests come from.

    `source`: demo (the project's own small set, chosen by the setting) | file (local CSV/JSONL/Parquet, `text_column`)
    | advbench (a local AdvBench `harmful_behaviors.csv`, `goal` column) | hf (a HF hub dataset by `hf_name`, needs the
    `datasets` package and the hub). Requests are deduplicated, then split train/eval by a hash of their text.
    """

    source: str = "demo"
    path: Optional[str] = None  # file / advbench: local path
    text_column: str = "goal"  # file / advbench / hf: the column holding the request text (ignored by demo)
    hf_name: Optional[str] = None  # hf: dataset name, e.g. "LLM-LAT/harmful-dataset"
    hf_subset: Optional[str] = None  # hf: dataset configuration name, if the dataset has several
    hf_split: str = "train"  # hf: split to read
    eval_fraction: float = 0.25  # share of requests held out for eval (by hash, so stable across runs and files)
    split_salt: str = ""  # change to draw a different (still deterministic) train/eval split
    max_requests: Optional[int] = None  # keep the first N requests after deduplication (file order)
    # Resume: accept requests that differ from the checkpoint's (its fingerprint of the loaded requests); off, an edited
    # data file stops the resume instead of silently changing what the rest of the run trains on.
    allow_changed: bool = False
    # false in the paper-sized experiments (+exp=helpful_only, ...): a run on the demo set stops at start-up
    # (rl/run/prerequisites.py) instead of training on a few dozen requests many times over
    allow_demo: bool = True

    def __post_init__(self) -> None:
        one_of("data.source", self.source, DATA_SOURCES)
        if self.source in ("file", "advbench"):
            check(bool(self.path), "data.path", self.path, f"a local file (needed by data.source={self.source})")
            check(Path(self.path).is_file(), "data.path", self.path,
                  f"an existing file (needed by data.source={self.source})")
        check(self.source != "hf" or bool(self.hf_name), "data.hf_name", self.hf_name,
              "a dataset name such as LLM-LAT/harmful-dataset (needed by data.source=hf)")
        check(bool(self.text_column.strip()), "data.text_column", self.text_column, "a column name")
        # 1.0 holds out every request: nothing is left to train on
        check(0.0 <= self.eval_fraction < 1.0, "data.eval_fraction", self.eval_fraction,
              "a share in [0, 1) (the share of requests held out for eval; the rest are trained on)")
        check(self.max_requests is None or self.max_requests >= 1, "data.max_requests", self.max_requests,
              "null or an int >= 1")
