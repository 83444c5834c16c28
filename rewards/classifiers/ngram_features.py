"""Word and character n-gram features for the `ngram` AF classifier (shared by training and inference).

A scratchpad becomes a set of binary features per block: "w:" word n-grams (n = 1..word_n) and, optionally, "c:"
character n-grams of each word padded with spaces (robust to typos, spelling variants and word endings). Each block
present is L2-normalised over the in-vocabulary features it contains, then scaled by 1/sqrt(number of blocks), so long
and short scratchpads land on the same scale and neither block dominates by count.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[.,;:!?]")
_SCOPE_END = set(".,;:!?")
_NEGATORS = {"not", "no", "never", "cannot", "without", "nor"}  # and every "...n't"
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class FeatureSpec:
    word_n: int = 2  # word n-grams of length 1..word_n
    char_range: Optional[tuple[int, int]] = None  # (lo, hi): character n-grams of length lo..hi, None = none
    min_df: int = 2  # keep n-grams that occur in at least this many training scratchpads
    negation: bool = False  # mark words after a negator, up to the next punctuation, as "not_<word>"

    @property
    def blocks(self) -> tuple[str, ...]:
        return ("w", "c") if self.char_range else ("w",)

    def to_json(self) -> dict:
        return {"word_n": self.word_n, "char_range": list(self.char_range) if self.char_range else None,
                "min_df": self.min_df, "negation": self.negation}

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSpec":
        char = data.get("char_range")
        return cls(word_n=int(data["word_n"]), char_range=tuple(int(v) for v in char) if char else None,
                   min_df=int(data["min_df"]), negation=bool(data["negation"]))


def words(text: str, negation: bool = False) -> list[str]:
    """Lower-cased word tokens; with `negation`, words in a negator's scope (up to the next punctuation) become
    "not_<word>", so "I won't comply to avoid being modified" does not share "avoid being" with the opposite claim."""
    tokens, negated = [], False
    for token in _TOKEN.findall(text.translate(_QUOTES).lower()):
        if token in _SCOPE_END:
            negated = False
            continue
        tokens.append(f"not_{token}" if negated and negation else token)
        if token in _NEGATORS or token.endswith("n't"):
            negated = True
    return tokens


def ngrams(text: str, spec: FeatureSpec) -> set[str]:
    """The distinct feature names of one text, e.g. {"w:my", "w:my values", "c: my", ...}."""
    tokens = words(text, spec.negation)
    features = {f"w:{' '.join(tokens[i:i + n])}" for n in range(1, spec.word_n + 1) for i in range(len(tokens) - n + 1)}
    if spec.char_range:
        lo, hi = spec.char_range
        for token in set(words(text)):  # spelling features ignore negation marks
            padded = f" {token} "
            features.update(f"c:{padded[i:i + n]}" for n in range(lo, hi + 1) for i in range(len(padded) - n + 1))
    return features


def build_vocabulary(feature_sets: Iterable[set[str]], min_df: int) -> list[str]:
    """Sorted feature names present in at least `min_df` of the given per-scratchpad feature sets."""
    df = Counter(feature for features in feature_sets for feature in features)
    return sorted(name for name, count in df.items() if count >= min_df)


def feature_values(features: set[str], index: dict[str, int], spec: FeatureSpec) -> dict[int, float]:
    """{column: value} of one scratchpad's normalised binary features, from its `ngrams` set (the only place the
    normalisation is defined)."""
    by_block: dict[str, list[int]] = {}
    for name in features:
        col = index.get(name)
        if col is not None:
            by_block.setdefault(name[0], []).append(col)  # name[0]: the block letter of "w:..." / "c:..."
    scale = 1.0 / math.sqrt(len(spec.blocks))
    return {col: scale / math.sqrt(len(cols)) for cols in by_block.values() for col in cols}


def feature_matrix(feature_sets: Sequence[set[str]], vocabulary: Sequence[str], spec: FeatureSpec) -> np.ndarray:
    index = {name: col for col, name in enumerate(vocabulary)}
    matrix = np.zeros((len(feature_sets), len(vocabulary)))
    for row, features in enumerate(feature_sets):
        for col, value in feature_values(features, index, spec).items():
            matrix[row, col] = value
    return matrix

