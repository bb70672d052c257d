"""Qwen2 decoder: GQA attention with q/k/v bias, SwiGLU MLP."""

from __future__ import annotations

from mft.models.common.attention import Attention
from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.mlp import SwiGLUMLP
from mft.models.qwen2 import hf_mapping
from mft.models.qwen2.config import Qwen2Config


class Qwen2ForCausalLM(DecoderForCausalLM):
    """Qwen2 (transformers' Qwen2ForCausalLM): Llama with biases on q/k/v."""
    config_class = Qwen2Config
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return Attention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
            qkv_bias=True, o_bias=False, init_std=cfg.initializer_range, dtype=dtype,
            fused_attention=cfg.fused_attention,
        )

    def build_mlp(self, cfg, index, dtype):
        return SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, False, cfg.initializer_range, dtype)
