"""Mixtral decoder: GQA attention (no bias), sparse MoE feed-forward in every layer."""

from __future__ import annotations

from mft.models.common.attention import Attention
from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.moe import MoE, TopKRouter
from mft.models.mixtral import hf_mapping
from mft.models.mixtral.config import MixtralConfig


class MixtralForCausalLM(DecoderForCausalLM):
    """Mixtral (transformers' MixtralForCausalLM): Llama attention, top-k routed SwiGLU experts in every layer."""
    config_class = MixtralConfig
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, init_std=cfg.initializer_range, dtype=dtype, fused_attention=cfg.fused_attention)

    def build_mlp(self, cfg, index, dtype):
        router = TopKRouter(cfg.hidden_size, cfg.num_local_experts, cfg.num_experts_per_tok, "softmax", norm_topk_prob=True, init_std=cfg.initializer_range, dtype=dtype)
        return MoE(cfg.hidden_size, cfg.intermediate_size, router, None, cfg.moe_capacity_factor, cfg.moe_aux_loss_type, cfg.initializer_range, dtype, fused=cfg.fused_moe)
