"""Qwen3-MoE family: Qwen3 attention, softmax top-k MoE (norm_topk_prob), dense mlp_only_layers."""

from mft.models.qwen3_moe.config import Qwen3MoeConfig
from mft.models.qwen3_moe.model import Qwen3MoeForCausalLM

MODEL_TYPE = "qwen3_moe"
ARCHITECTURES = ("Qwen3MoeForCausalLM",)
CONFIG_CLASS = Qwen3MoeConfig
MODEL_CLASS = Qwen3MoeForCausalLM

__all__ = ["Qwen3MoeConfig", "Qwen3MoeForCausalLM"]
