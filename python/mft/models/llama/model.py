"""Llama decoder (Llama 2/3 family) as a MindSpore Cell with exact HF parity."""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn, ops

from mft.models.base import CausalLM
from mft.models.common.attention import Attention, causal_mask
from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.rope import RotaryEmbedding
from mft.models.llama import hf_mapping
from mft.models.llama.config import LlamaConfig
from mft.ops.rms_norm import RMSNorm
from mft.parallel.layers import ColumnParallelLinear, VocabParallelEmbedding


class LlamaDecoderLayer(nn.Cell):
    def __init__(self, cfg: LlamaConfig, dtype):
        super().__init__()
        std = cfg.initializer_range
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.self_attn = Attention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
            qkv_bias=cfg.attention_bias, o_bias=cfg.attention_bias, init_std=std, dtype=dtype,
        )
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.mlp = SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias, std, dtype)

    def construct(self, x, cos, sin, mask, slots=None, k_cache=None, v_cache=None):
        attn, k_cache, v_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, slots, k_cache, v_cache)
        h = x + attn
        h = h + self.mlp(self.post_attention_layernorm(h))
        return h, k_cache, v_cache


class LlamaModel(nn.Cell):
    def __init__(self, cfg: LlamaConfig, dtype):
        super().__init__()
        self.num_layers = cfg.num_hidden_layers
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size, cfg.initializer_range, dtype)
        self.layers = nn.CellList([LlamaDecoderLayer(cfg, dtype) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.rotary_emb = RotaryEmbedding(cfg.rope_type, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)

    def construct(self, input_ids, start_pos=None, k_caches=None, v_caches=None, pad_lengths=None):
        """Hidden states (B, S, hidden) and the updated caches (tuples; empty without caches).

        With caches, the chunk occupies slots start_pos.. (int32 scalar tensor)
        of the cache. `pad_lengths` (B,) counts each row's left padding: those
        slots are masked and the row's positions count from its first real token.
        """
        seq = input_ids.shape[1]
        slots = ops.arange(0, seq, dtype=ms.int32)
        key_length = seq
        if k_caches is not None:
            slots = slots + start_pos
            key_length = k_caches[0].shape[2]
        if pad_lengths is None:
            positions = slots
        else:
            positions = ops.maximum(slots.reshape(1, -1) - pad_lengths.astype(ms.int32).reshape(-1, 1), 0)
        mask = causal_mask(slots, key_length, pad_lengths)
        cos, sin = self.rotary_emb(positions)
        h = self.embed_tokens(input_ids)
        new_k = ()
        new_v = ()
        for i in range(self.num_layers):
            if k_caches is None:
                h, _, _ = self.layers[i](h, cos, sin, mask)
            else:
                h, k, v = self.layers[i](h, cos, sin, mask, slots, k_caches[i], v_caches[i])
                new_k = new_k + (k,)
                new_v = new_v + (v,)
        return self.norm(h), new_k, new_v


class LlamaForCausalLM(CausalLM):
    config_class = LlamaConfig
    hf_mapping = hf_mapping

    def __init__(self, config: LlamaConfig, dtype=ms.float32):
        super().__init__()
        self.config = config
        self.param_dtype = dtype
        self.model = LlamaModel(config, dtype)
        self.tied = config.tie_word_embeddings
        if not self.tied:
            self.lm_head = ColumnParallelLinear(config.hidden_size, config.vocab_size, False, config.initializer_range, dtype)

    def logits_from_hidden(self, h):
        if self.tied:
            logits = mint.nn.functional.linear(h, self.model.embed_tokens.weight)
        else:
            logits = self.lm_head(h)
        return logits.astype(ms.float32)

    def construct(self, input_ids):
        """input_ids (B, S) -> fp32 logits (B, S, vocab), causal, no cache."""
        h, _, _ = self.model(input_ids)
        return self.logits_from_hidden(h)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only: bool = False, pad_lengths=None):
        """One step: logits for the chunk (or its last position) and the updated caches.

        k_caches/v_caches None runs without a cache (start_pos is then unused);
        `pad_lengths` (B,) int marks left padding (see LlamaModel.construct).
        """
        h, k_caches, v_caches = self.model(input_ids, start_pos, k_caches, v_caches, pad_lengths)
        if last_only:
            h = h[:, -1:, :]
        return self.logits_from_hidden(h), k_caches, v_caches
