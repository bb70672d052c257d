"""Mistral family (model_type mistral): Llama's math; the sliding window must be off (null)."""

from mft.models.mistral.config import MistralConfig
from mft.models.mistral.model import MistralForCausalLM

# Registry entries read by mft.models.auto.
MODEL_TYPE = "mistral"
ARCHITECTURES = ("MistralForCausalLM",)
CONFIG_CLASS = MistralConfig
MODEL_CLASS = MistralForCausalLM

__all__ = ["MistralConfig", "MistralForCausalLM"]
