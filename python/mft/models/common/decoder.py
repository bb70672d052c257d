"""The decoder-only transformer every family is assembled into.

A family only says, per layer, which attention and which feed-forward block
to build (`DecoderForCausalLM.build_attention` / `build_mlp`); the residual
wiring, RoPE, masks, KV cache, LM head and MoE loss collection live here once.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn, ops

from mft.models.base import CausalLM
from mft.models.common.attention import _MASKED, Attention, causal_mask
from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.moe import MoE
from mft.models.common.rope import RotaryEmbedding
from mft.ops.rms_norm import RMSNorm
from mft.parallel.context_parallel import current as current_cp, positions as cp_positions
from mft.parallel.layers import ColumnParallelLinear, VocabParallelEmbedding
from mft.parallel.tensor_parallel import current_group, enter_region, sequence_parallel


class DecoderLayer(nn.Cell):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.)); the mlp may be a MoE."""

    def __init__(self, cfg, attention: nn.Cell, mlp: nn.Cell, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.self_attn = attention
        if getattr(cfg, "fused_rope", False) and isinstance(attention, Attention):  # MLA applies its own rope
            attention.fused_rope = True
        if getattr(cfg, "fused_swiglu", False) and isinstance(mlp, SwiGLUMLP):  # MoE experts have their own
            mlp.act.fused = True
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.mlp = mlp
        self.is_moe = isinstance(mlp, MoE)

    def construct(self, x, cos, sin, mask, slots=None, k_cache=None, v_cache=None):
        """-> (hidden, k_cache, v_cache, balance loss, z-loss, expert load (E,) or (1,) for dense)."""
        attn, k_cache, v_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, slots, k_cache, v_cache)
        h = x + attn
        if self.is_moe:
            m, balance, z_loss, load = self.mlp(self.post_attention_layernorm(h))
            return h + m, k_cache, v_cache, balance, z_loss, load
        zero = ops.zeros((), ms.float32)
        return h + self.mlp(self.post_attention_layernorm(h)), k_cache, v_cache, zero, zero, ops.zeros((1,), ms.float32)


def packed_positions_and_mask(packed):
    """Packed fine-tuning rows (B, 3, S): token ids, position ids (restarting at 0 per
    conversation), segment ids (1, 2, ... per conversation, 0 on trailing padding).

    -> (token ids (B, S), positions (B, S), (additive mask (B, 1, S, S), seq ends (B, S))):
    a query sees earlier keys of its own segment only. The seq ends (cumulative
    segment ends, padded with the row's real length) are the same rule in the
    form the fused attention kernel reads (`mft.ops.attention`). Segments must be
    contiguous runs (as `mft.data.sft_packing` writes them).
    """
    ids = packed[:, 0]
    positions = packed[:, 1]
    seg = packed[:, 2].astype(ms.int32)
    seq = ids.shape[1]
    pos = ops.arange(0, seq, dtype=ms.int32)
    causal = (pos.reshape(1, -1) <= pos.reshape(-1, 1)).expand_dims(0)
    allowed = mint.logical_and(causal, seg.expand_dims(2) == seg.expand_dims(1))
    mask = mint.where(allowed, ms.Tensor(0.0, ms.float32), ms.Tensor(_MASKED, ms.float32)).expand_dims(1)
    # Seq ends in O(S log S), not (S, S): p + 1 where a real segment's last token is p, then S, sorted.
    following = mint.cat((seg[:, 1:], ops.zeros((seg.shape[0], 1), ms.int32)), dim=1)
    last = mint.logical_and(seg != following, seg > 0)
    ends = mint.where(last, (pos + 1).reshape(1, -1), ms.Tensor(seq, ms.int32))
    ends = ops.sort(ends.astype(ms.float32), axis=-1)[0].astype(ms.int32)  # exact below 2**24; CPU has no int sort
    return ids, positions, (mask, ends)


class DecoderModel(nn.Cell):
    """Embedding, layers, final norm (HF's `model.` prefix)."""

    def __init__(self, cfg, layers: list, dtype):
        super().__init__()
        self.num_layers = len(layers)
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size, cfg.initializer_range, dtype)
        self.layers = nn.CellList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        rope_params = {**cfg.rope_scaling, "max_position_embeddings": cfg.max_position_embeddings}  # yarn reads the context length
        self.rotary_emb = RotaryEmbedding(cfg.rope_type, cfg.rope_head_dim(), cfg.rope_theta, rope_params)
        self.moe_flags = tuple(layer.is_moe for layer in layers)
        self.cp_info = current_cp()  # parallel.cp: inputs are this rank's two chunks (mft.parallel.context_parallel)
        self.has_cp = self.cp_info is not None
        self.cp_positions = cp_positions(self.cp_info) if self.has_cp else None

    def positions_and_mask(self, input_ids, start_pos=None, k_caches=None, pad_lengths=None):
        """(cache slots, position ids, attention mask) of a chunk: causal over the cache, left padding masked; context parallel: the rank's chunks."""
        if self.has_cp:  # true positions of the rank's chunks; attention builds its own masks (AttentionCore)
            return None, self.cp_positions(), None
        seq = input_ids.shape[1]
        slots = ops.arange(0, seq, dtype=ms.int32)
        key_length = seq
        if k_caches is not None:
            slots = slots + start_pos
            # A paged cache (tuple, see attention.attend) is attended by the kernel without this mask.
            key_length = seq if isinstance(k_caches[0], tuple) else k_caches[0].shape[2]
        if pad_lengths is None:
            positions = slots
        else:
            positions = ops.maximum(slots.reshape(1, -1) - pad_lengths.astype(ms.int32).reshape(-1, 1), 0)
        return slots, positions, causal_mask(slots, key_length, pad_lengths)

    def construct(self, input_ids, start_pos=None, k_caches=None, v_caches=None, pad_lengths=None):
        """Hidden states (B, S, hidden), the updated caches (tuples; empty without caches),
        summed balance and z losses of the MoE layers, and their loads (tuple of (E,)).

        With caches, the chunk occupies slots start_pos.. (int32 scalar tensor)
        of the cache. `pad_lengths` (B,) counts each row's left padding: those
        slots are masked and the row's positions count from its first real token.
        Packed rows (no cache): input_ids (B, 3, S) = token ids, position ids,
        segment ids (`packed_positions_and_mask`).
        """
        if input_ids.ndim == 3:
            input_ids, positions, mask = packed_positions_and_mask(input_ids)
            slots = None
        else:
            slots, positions, mask = self.positions_and_mask(input_ids, start_pos, k_caches, pad_lengths)
        cos, sin = self.rotary_emb(positions)
        h = self.embed_tokens(input_ids)
        h, new_k, new_v, balance, z_loss, loads = self.run_layers(h, cos, sin, mask, slots, k_caches, v_caches)
        return self.norm(h), new_k, new_v, balance, z_loss, loads

    def run_layers(self, h, cos, sin, mask, slots, k_caches, v_caches):
        """Runs the decoder layers: (hidden, new k caches, new v caches, MoE balance loss, z loss, expert loads)."""
        new_k = ()
        new_v = ()
        loads = ()
        balance = ops.zeros((), ms.float32)
        z_loss = ops.zeros((), ms.float32)
        for i in range(self.num_layers):
            if k_caches is None:
                h, _, _, bal, z, load = self.layers[i](h, cos, sin, mask)
            else:
                h, k, v, bal, z, load = self.layers[i](h, cos, sin, mask, slots, k_caches[i], v_caches[i])
                new_k = new_k + (k,)
                new_v = new_v + (v,)
            if self.moe_flags[i]:
                balance = balance + bal
                z_loss = z_loss + z
                loads = loads + (load,)
        return h, new_k, new_v, balance, z_loss, loads


class DecoderForCausalLM(CausalLM):
    """A family subclasses this, sets config_class/hf_mapping and implements
    build_attention(cfg, layer_index, dtype) and build_mlp(cfg, layer_index, dtype)."""

    def __init__(self, config, dtype=ms.float32):
        super().__init__()
        self.config = config
        self.param_dtype = dtype
        layers = [DecoderLayer(config, self.build_attention(config, i, dtype), self.build_mlp(config, i, dtype), dtype) for i in range(config.num_hidden_layers)]
        self.model = DecoderModel(config, layers, dtype)
        self.num_moe_layers = sum(self.model.moe_flags)
        self.tied = config.tie_word_embeddings
        # Tensor parallel (built inside mft.parallel.tensor_parallel.tensor_parallel): the LM head is
        # vocab-parallel, so logits come out as this rank's ceil(vocab / tp) columns; the training loss
        # is mft.parallel.cross_entropy's vocab-parallel cross-entropy (no rank builds full logits).
        self.tp_group = current_group()
        self.tp_size = self.tp_group.size
        self.sequence_parallel = sequence_parallel()  # norms and residuals on 1/tp of the sequence
        self.cp_info = self.model.cp_info  # parallel.cp: the train step selects the rank's chunks (CausalLMLoss)
        if not self.tied:
            self.lm_head = ColumnParallelLinear(config.hidden_size, config.vocab_size, False, config.initializer_range, dtype,
                                                pad=True)
        self.tied_copy = None
        if self.tied and self.tp_size > 1:
            self.tied_copy = enter_region(self.tp_group)  # under sp: the sequence all-gather
        self.has_tied_copy = self.tied_copy is not None

    # Each family (models/<family>/model.py) overrides these two builders.
    def build_attention(self, cfg, index: int, dtype) -> nn.Cell:
        """The attention cell of layer `index` (each family defines it)."""
        raise NotImplementedError(f"{type(self).__name__} must define build_attention")

    def build_mlp(self, cfg, index: int, dtype) -> nn.Cell:
        """The MLP (dense or mixture-of-experts) cell of layer `index` (each family defines it)."""
        raise NotImplementedError(f"{type(self).__name__} must define build_mlp")

    def logits_from_hidden(self, h):
        """Vocabulary logits of the final hidden states: lm_head, or the embedding matrix when tied."""
        if self.tied:
            if self.has_tied_copy:
                h = self.tied_copy(h)
            logits = mint.nn.functional.linear(h, self.model.embed_tokens.weight.astype(h.dtype))
        else:
            logits = self.lm_head(h)
        return logits.astype(ms.float32)

    def construct(self, input_ids):
        """input_ids (B, S) -> fp32 logits (B, S, vocab), causal, no cache."""
        h = self.model(input_ids)[0]
        return self.logits_from_hidden(h)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only: bool = False, pad_lengths=None):
        """One step: logits for the chunk (or its last position) and the updated caches.

        k_caches/v_caches None runs without a cache (start_pos is then unused);
        `pad_lengths` (B,) int marks left padding (see DecoderModel.construct).
        """
        h, k_caches, v_caches = self.model(input_ids, start_pos, k_caches, v_caches, pad_lengths)[:3]
        if last_only:
            h = h[:, -1:, :]
        return self.logits_from_hidden(h), k_caches, v_caches

    # ---- training ---------------------------------------------------------
    def train_forward(self, input_ids, labels, loss_fn):
        """(LM loss, weighted auxiliary loss, expert loads (moe layers, E) or (1, 1)).

        The auxiliary loss is aux_loss_coef * balance + router_z_loss_coef * z
        (each averaged over MoE layers) plus anything a family adds (MTP).
        """
        lm_loss, aux, loads, _ = self.train_forward_hidden(input_ids, labels, loss_fn)
        return lm_loss, aux, loads

    def train_forward_hidden(self, input_ids, labels, loss_fn):
        """train_forward's outputs and the final (normalised) hidden states."""
        h, _, _, balance, z_loss, loads = self.model(input_ids)
        lm_loss = loss_fn(self.logits_from_hidden(h), labels)
        aux = ops.zeros((), ms.float32)
        if self.num_moe_layers == 0:
            return lm_loss, aux, ops.zeros((1, 1), ms.float32), h
        cfg = self.config
        if cfg.moe_aux_loss_coef > 0:
            aux = aux + balance * (cfg.moe_aux_loss_coef / self.num_moe_layers)
        if cfg.moe_z_loss_coef > 0:
            aux = aux + z_loss * (cfg.moe_z_loss_coef / self.num_moe_layers)
        return lm_loss, aux, ops.stack(loads), h

    def update_expert_bias(self, loads, rate: float):
        """Auxiliary-loss-free balancing: bias += rate * sign(mean load - load), per MoE layer."""
        j = 0
        for i in range(self.model.num_layers):
            if self.model.moe_flags[i]:
                router = self.model.layers[i].mlp.gate
                if router.has_bias:
                    load = loads[j]
                    ops.assign_add(router.e_score_correction_bias, rate * ops.sign(load.mean() - load))
                j += 1
        return loads
