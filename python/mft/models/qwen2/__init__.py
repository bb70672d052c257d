"""Qwen2 family: Llama layout with q/k/v biases."""

from mft.models.qwen2.config import Qwen2Config
from mft.models.qwen2.model import Qwen2ForCausalLM

MODEL_TYPE = "qwen2"
ARCHITECTURES = ("Qwen2ForCausalLM",)
CONFIG_CLASS = Qwen2Config
MODEL_CLASS = Qwen2ForCausalLM

__all__ = ["Qwen2Config", "Qwen2ForCausalLM"]
