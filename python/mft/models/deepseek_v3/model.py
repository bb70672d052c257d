"""DeepSeek-V3 decoder: MLA attention; the first first_k_dense_replace layers dense, the rest
shared + routed experts with sigmoid, group-limited, bias-corrected routing."""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from mft.models.common.decoder import DecoderForCausalLM, DecoderLayer
from mft.models.common.mla import MLAttention
from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.moe import MoE, TopKRouter
from mft.models.common.mtp import MTPModule, mtp_loss
from mft.models.deepseek_v3 import hf_mapping
from mft.models.deepseek_v3.config import DeepseekV3Config


class DeepseekV3ForCausalLM(DecoderForCausalLM):
    """DeepSeek-V3 (transformers' DeepseekV3ForCausalLM): MLA attention, shared + group-limited routed experts, optional MTP modules."""
    config_class = DeepseekV3Config
    hf_mapping = hf_mapping
    hf_mapping_needs_config = True

    def __init__(self, config: DeepseekV3Config, dtype=ms.float32):
        super().__init__(config, dtype)
        # Training-only multi-token prediction; each module's layer is built like the layer after the last.
        n = config.num_hidden_layers
        self.mtp = nn.CellList([
            MTPModule(config, DecoderLayer(config, self.build_attention(config, n + k, dtype), self.build_mlp(config, n + k, dtype), dtype), dtype)
            for k in range(config.mtp_layers)
        ])

    def train_forward(self, input_ids, labels, loss_fn):
        """The shared decoder's losses plus mtp_loss_coef * mean MTP loss (when MTP modules exist)."""
        if self.config.mtp_layers == 0:
            return super().train_forward(input_ids, labels, loss_fn)
        lm_loss, aux, loads, hidden = self.train_forward_hidden(input_ids, labels, loss_fn)
        aux = aux + self.config.mtp_loss_coef * mtp_loss(self, input_ids, labels, hidden, loss_fn)
        return lm_loss, aux, loads

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
        return MoE(cfg.hidden_size, cfg.moe_intermediate_size, router, shared, cfg.moe_capacity_factor, cfg.moe_aux_loss_type, std, dtype, fused=cfg.fused_moe)

    def new_kv_cache(self, batch_size: int, max_length: int):
        """MLA caches the compressed latent (mft.models.common.mla): "keys" (B, 1, L, kv_lora_rank) hold the
        normalised latent, "values" (B, 1, L, qk_rope_head_dim) the rotated shared rope key."""
        from mft.inference.kv_cache import KVCache

        cfg = self.config
        cache = KVCache(cfg.num_hidden_layers, batch_size, 1, max_length, cfg.kv_lora_rank, self.param_dtype)
        shape = (batch_size, 1, max_length, cfg.rope_head_dim())
        cache.values = tuple(ops.zeros(shape, self.param_dtype) for _ in range(cfg.num_hidden_layers))
        return cache
