"""Qwen3-MoE decoder: Qwen3 attention; sparse layers use a softmax top-k MoE, the rest a dense MLP."""

from __future__ import annotations

from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.moe import MoE, TopKRouter
from mft.models.qwen3.model import qwen3_attention
from mft.models.qwen3_moe import hf_mapping
from mft.models.qwen3_moe.config import Qwen3MoeConfig


class Qwen3MoeForCausalLM(DecoderForCausalLM):
    """Qwen3-MoE (transformers' Qwen3MoeForCausalLM): Qwen3 attention, routed experts on sparse layers."""
    config_class = Qwen3MoeConfig
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return qwen3_attention(cfg, dtype)

    def build_mlp(self, cfg, index, dtype):
        if not cfg.is_sparse(index):
            return SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, False, cfg.initializer_range, dtype)
        router = TopKRouter(cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, "softmax", norm_topk_prob=cfg.norm_topk_prob, init_std=cfg.initializer_range, dtype=dtype)
        return MoE(cfg.hidden_size, cfg.moe_intermediate_size, router, None, cfg.moe_capacity_factor, cfg.moe_aux_loss_type, cfg.initializer_range, dtype, fused=cfg.fused_moe)
