"""Qwen3 family: per-head q/k RMSNorm, explicit head_dim."""

from mft.models.qwen3.config import Qwen3Config
from mft.models.qwen3.model import Qwen3ForCausalLM

MODEL_TYPE = "qwen3"
ARCHITECTURES = ("Qwen3ForCausalLM",)
CONFIG_CLASS = Qwen3Config
MODEL_CLASS = Qwen3ForCausalLM

__all__ = ["Qwen3Config", "Qwen3ForCausalLM"]
