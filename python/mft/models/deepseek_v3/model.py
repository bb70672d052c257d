"""DeepSeek-V3 decoder: MLA attention; the first first_k_dense_replace layers dense, the rest
shared + routed experts with sigmoid, group-limited, bias-corrected routing."""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

from mft.models.common.decoder import DecoderForCausalLM
from mft.models.common.mla import MLAttention
from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.moe import MoE, TopKRouter
from mft.models.deepseek_v3 import hf_mapping
from mft.models.deepseek_v3.config import DeepseekV3Config


class DeepseekV3ForCausalLM(DecoderForCausalLM):
    config_class = DeepseekV3Config
    hf_mapping = hf_mapping

    def build_attention(self, cfg, index, dtype):
        return MLAttention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.q_lora_rank, cfg.kv_lora_rank,
            cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, bias=cfg.attention_bias,
            rope_interleave=cfg.rope_interleave, softmax_scale=cfg.softmax_scale(), norm_eps=cfg.rms_norm_eps,
            fused_rmsnorm=cfg.fused_rmsnorm, init_std=cfg.initializer_range, dtype=dtype,
        )

    def build_mlp(self, cfg, index, dtype):
        std = cfg.initializer_range
        if not cfg.is_sparse(index):
            return SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, False, std, dtype)
        router = TopKRouter(
            cfg.hidden_size, cfg.n_routed_experts, cfg.num_experts_per_tok, "sigmoid", norm_topk_prob=cfg.norm_topk_prob,
            n_group=cfg.n_group, topk_group=cfg.topk_group, routed_scaling_factor=cfg.routed_scaling_factor,
            correction_bias=True, init_std=std, dtype=dtype,
        )
        shared = SwiGLUMLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts, False, std, dtype) if cfg.n_shared_experts else None
        return MoE(cfg.hidden_size, cfg.moe_intermediate_size, router, shared, cfg.moe_capacity_factor, cfg.moe_aux_loss_type, std, dtype)

    def new_kv_cache(self, batch_size: int, max_length: int):
        """Per-head keys are qk_head_dim wide, values v_head_dim wide."""
        from mft.inference.kv_cache import KVCache

        cfg = self.config
        cache = KVCache(cfg.num_hidden_layers, batch_size, cfg.num_attention_heads, max_length, cfg.qk_head_dim, self.param_dtype)
        shape = (batch_size, cfg.num_attention_heads, max_length, cfg.v_head_dim)
        cache.values = tuple(ops.zeros(shape, self.param_dtype) for _ in range(cfg.num_hidden_layers))
        return cache
