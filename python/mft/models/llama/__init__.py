"""Llama family: config, model, HF state-dict mapping."""

from mft.models.llama.config import LlamaConfig
from mft.models.llama.model import LlamaForCausalLM

# Registry entries read by mft.models.auto.
MODEL_TYPE = "llama"
ARCHITECTURES = ("LlamaForCausalLM",)
CONFIG_CLASS = LlamaConfig
MODEL_CLASS = LlamaForCausalLM

__all__ = ["LlamaConfig", "LlamaForCausalLM"]
