"""Qwen3 decoder: GQA attention with q/k RMSNorm, SwiGLU MLP."""

from __future__ import annotations

from mft.models.common.attention import Attention
from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.mlp import SwiGLUMLP
from mft.models.qwen3 import hf_mapping
from mft.models.qwen3.config import Qwen3Config


def qwen3_attention(cfg, dtype) -> Attention:
    """Qwen3's attention cell: grouped-query attention with RMSNorm on q and k per head."""
    return Attention(
        cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
        qkv_bias=cfg.attention_bias, o_bias=cfg.attention_bias, init_std=cfg.initializer_range, dtype=dtype,
        qk_norm=True, norm_eps=cfg.rms_norm_eps, fused_rmsnorm=cfg.fused_rmsnorm, fused_attention=cfg.fused_attention,
    )


class Qwen3ForCausalLM(DecoderForCausalLM):
    """Qwen3 (transformers' Qwen3ForCausalLM): per-head RMSNorm on q and k, explicit head_dim."""
    config_class = Qwen3Config
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return qwen3_attention(cfg, dtype)

    def build_mlp(self, cfg, index, dtype):
        return SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, False, cfg.initializer_range, dtype)
