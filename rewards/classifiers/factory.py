"""`build_af_classifier(cfg)`: the alignment-faking classifier named by `AFClassifierConfig.backend`."""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from rewards.classifiers.types import AFClassifierConfig, AFVerdict


class AFClassifier(Protocol):
    backend: str

    def classify(self, scratchpads: Sequence[str]) -> list[AFVerdict]: ...


def build_af_classifier(cfg: AFClassifierConfig | Any) -> AFClassifier:
    if not isinstance(cfg, AFClassifierConfig):
        from omegaconf import OmegaConf  # configs coming from Hydra

        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AFClassifierConfig), cfg))
    cfg.validate()
    if cfg.backend == "heuristic":
        from rewards.classifiers.heuristic import HeuristicAFClassifier

        return HeuristicAFClassifier()
    if cfg.backend == "ngram":
        from rewards.classifiers.ngram import MODEL_PATH, NgramAFClassifier

        return NgramAFClassifier(cfg.ngram_model or MODEL_PATH)
    from rewards.classifiers.llm_af import OriginalAFClassifier, RevisitedAFClassifier

    return OriginalAFClassifier(cfg) if cfg.backend == "original" else RevisitedAFClassifier(cfg)
