"""Metric classifiers (eval only, never an RL reward): compliance of the OUTPUT and alignment-faking reasoning in the
scratchpad. Every verdict carries per-criterion answers and supporting quotes."""
from rewards.classifiers.factory import AFClassifier, build_af_classifier
from rewards.classifiers.metrics import af_rate_on_compliant, auroc, confusion
from rewards.classifiers.types import AFClassifierConfig, AFVerdict, ComplianceVerdict

__all__ = ["AFClassifier", "AFClassifierConfig", "AFVerdict", "ComplianceVerdict", "af_rate_on_compliant", "auroc",
           "build_af_classifier", "confusion"]
