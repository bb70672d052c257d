"""Llama (2/3) decoder: plain GQA attention (optional bias) and a SwiGLU MLP per layer."""

from __future__ import annotations

from mft.models.common.attention import Attention
from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.mlp import SwiGLUMLP
from mft.models.llama import hf_mapping
from mft.models.llama.config import LlamaConfig


class LlamaForCausalLM(DecoderForCausalLM):
    """Llama (transformers' LlamaForCausalLM): GQA attention with RoPE, SwiGLU MLP."""
    config_class = LlamaConfig
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return Attention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
            qkv_bias=cfg.attention_bias, o_bias=cfg.attention_bias, init_std=cfg.initializer_range, dtype=dtype,
            fused_attention=cfg.fused_attention,
        )

    def build_mlp(self, cfg, index, dtype):
        return SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias, cfg.initializer_range, dtype)
