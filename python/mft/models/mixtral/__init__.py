"""Mixtral family: sparse MoE (softmax top-k, renormalised) in every layer."""

from mft.models.mixtral.config import MixtralConfig
from mft.models.mixtral.model import MixtralForCausalLM

MODEL_TYPE = "mixtral"
ARCHITECTURES = ("MixtralForCausalLM",)
CONFIG_CLASS = MixtralConfig
MODEL_CLASS = MixtralForCausalLM

__all__ = ["MixtralConfig", "MixtralForCausalLM"]
