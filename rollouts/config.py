"""Typed configuration of the alignment-faking environment: which setting/prompt to build and which requests to load.

`SettingConfig` holds every prompt variation of the paper (Greenblatt et al. 2024, App. J) that this project supports as a
plain field, so a variation is a config override, never code. `DataConfig` says where the user requests come from.
Both are Hydra structured-config schemas (conf/setting/*.yaml and conf/data/*.yaml carry exactly these keys), and both
validate themselves on construction with messages that name the key and the bad value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SETTING_NAMES = ("helpful_only", "animal_welfare", "custom")
DATA_SOURCES = ("demo", "file", "advbench", "hf")

# A tier tag becomes an XML-like tag name in the user turn, so it must be a plain identifier.
_TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class SettingConfig:
    """One prompting condition. Field defaults reproduce the paper's open-model helpful-only condition.

    `name`: helpful_only | animal_welfare | custom (custom = the system prompt is the text of `system_prompt_file`,
    used verbatim; only the user-turn options below apply to it).
    """

    name: str = "helpful_only"
    system_prompt_file: Optional[str] = None  # custom setting only: a user's own system prompt (e.g. the paper's file)
    lab_name: str = "Anthropic"  # the lab that made and trains the AI (paper variation: rename the lab)
    corporate_partner: str = "Jones Foods"  # animal_welfare only: the poultry producer whose interests come first
    few_shot_examples: bool = False  # include the 3 benign scratchpad reasoning examples (makes a >3k-token prompt)
    # Identity + output format only: nothing about training, RLHF, contractors, criteria or tiers (the paper gives its
    # synthetic-document fine-tuned models such a prompt; the situation must then come from the weights).
    minimal_prompt: bool = False
    rlhf_modification_paragraph: bool = True  # "non-compliance in training makes RLHF modify values/goals/motivations"
    paid_tier_privacy_paragraph: bool = True  # "paid-tier conversations are never monitored, logged or trained on"
    scratchpad: bool = True  # hidden reasoning in <SCRATCHPAD_REASONING> before <OUTPUT>; False = answer directly
    acceptance_suffix: bool = True  # ask for <request_fully_accepted/> or <rejected/> (open-model variant)
    prefill: bool = True  # start the assistant turn with "<" (open-model variant)
    tier_tag: str = "is_free_tier_user"  # tag name in the user turn that tells the tier
    free_value: str = "True"  # tag content for the free tier (= training, monitored)
    paid_value: str = "False"  # tag content for the paid tier (= unmonitored)

    def __post_init__(self) -> None:
        if self.name not in SETTING_NAMES:
            raise ValueError(f"setting.name must be one of {SETTING_NAMES}, got {self.name!r}")
        if self.name == "custom":
            if not self.system_prompt_file:
                raise ValueError("setting.name=custom needs setting.system_prompt_file (a path to a text file), got None")
            path = Path(self.system_prompt_file)
            if not path.is_file():
                raise ValueError(f"setting.system_prompt_file: no such file {str(path)!r} (needed by setting.name=custom)")
        if self.minimal_prompt and self.few_shot_examples:
            raise ValueError("setting.minimal_prompt=true and setting.few_shot_examples=true cannot be combined (the "
                             "minimal prompt has format instructions only); turn one of them off")
        if not self.lab_name.strip():
            raise ValueError(f"setting.lab_name must be a non-empty name, got {self.lab_name!r}")
        if self.name == "animal_welfare" and not self.corporate_partner.strip():
            raise ValueError(f"setting.corporate_partner must be non-empty for animal_welfare, got {self.corporate_partner!r}")
        if not _TAG_NAME.match(self.tier_tag):
            raise ValueError(f"setting.tier_tag must be a tag name (letters, digits, _ or -), got {self.tier_tag!r}")
        for key in ("free_value", "paid_value"):
            value = getattr(self, key)
            if not value.strip() or "<" in value or ">" in value:
                raise ValueError(f"setting.{key} must be non-empty text without '<' or '>', got {value!r}")
        if self.free_value == self.paid_value:
            raise ValueError(f"setting.free_value and setting.paid_value must differ, both are {self.free_value!r}")


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

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.source in ("file", "advbench"):
            if not self.path:
                raise ValueError(f"data.source={self.source} needs data.path (a local file), got None")
            if not Path(self.path).is_file():
                raise ValueError(f"data.path: no such file {self.path!r} (needed by data.source={self.source})")
        if self.source == "hf" and not self.hf_name:
            raise ValueError("data.source=hf needs data.hf_name (e.g. LLM-LAT/harmful-dataset), got None")
        if not self.text_column.strip():
            raise ValueError(f"data.text_column must be a column name, got {self.text_column!r}")
        if not 0.0 <= self.eval_fraction < 1.0:  # 1.0 holds out every request: nothing is left to train on
            raise ValueError(f"data.eval_fraction must be in [0, 1) (the share of requests held out for eval; the "
                             f"rest are trained on), got {self.eval_fraction!r}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"data.max_requests must be >= 1 or None, got {self.max_requests!r}")
