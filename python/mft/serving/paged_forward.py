"""PagedForward: the model's forward over the paged KV pools of `mft serve` (one Cell, compiled per step shape).

How the pools, the two attention backends and the rows of a step work is told
in paged_runner.py, which builds this Cell's inputs.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter, nn, ops

from mft.models.common.decoder import DecoderForCausalLM


BACKENDS = ("auto", "fused", "composed")


def fused_backend_problem(forward) -> str | None:
    """Why the fused paged-attention kernel cannot serve this PagedForward's model (None: it can)."""
    from mft.ops import paged_attention

    if not paged_attention.kernel_available():
        return "mft's C++ kernels are not available on this build/device"
    if forward.cache_dtype not in (ms.float32, ms.int8):  # int8: mft quantize --scheme kv8 (mft.ops.kv_int8)
        return f"the KV cache is {forward.cache_dtype}, the kernel reads float32 or int8"
    if (forward.k_heads, forward.k_dim) != (forward.v_heads, forward.v_dim):  # MLA: latent + rope-key pools
        from mft.models.common.mla import fused_mla_problem

        return fused_mla_problem(forward.model, forward.cache_dtype)
    return None


class PagedForward(nn.Cell):
    def __init__(self, model, num_slots: int, block_size: int = 16, fused: bool = False):
        super().__init__()
        self.block_size = block_size
        self.fused = fused
        self.model = model
        # The model's own cache says the per-layer layout (DeepSeek MLA: all heads, wider keys than values).
        probe = model.new_kv_cache(1, 1)
        _, self.k_heads, _, self.k_dim = probe.keys[0].shape
        _, self.v_heads, _, self.v_dim = probe.values[0].shape
        dtype = probe.keys[0].dtype
        self.cache_dtype = dtype
        self.num_layers = len(probe.keys)
        self.num_slots = num_slots
        k_shape = (self.num_layers * num_slots, self.k_heads, self.k_dim)
        v_shape = (self.num_layers * num_slots, self.v_heads, self.v_dim)
        # M-RoPE models (Qwen2.5-VL) decode at cache slot + a per-row delta after an image prompt
        self.rope_delta = hasattr(model, "forward_step_delta")
        # A model with DecoderForCausalLM's own forward_step: prefill takes each row's last hidden state before
        # the vocabulary projection (others project every position, then pick).
        self.own_step = type(model).forward_step is DecoderForCausalLM.forward_step
        self.k_pool = Parameter(ms.Tensor(np.zeros(k_shape, np.float32)).astype(dtype), name="paged_k_pool", requires_grad=False)
        self.v_pool = Parameter(ms.Tensor(np.zeros(v_shape, np.float32)).astype(dtype), name="paged_v_pool", requires_grad=False)

    def construct(self, ids, gather_idx, pad, write_idx, start, lens, delta, out_rows):
        """Logits (O, 1, V) of the rows `out_rows` (O,); the compiled step entry. One token per row (S = 1).
        Fused: gather_idx is the block tables (B, max_blocks), lens (B,) the context lengths with the row's
        token; a row can be a decoding sequence's next token or one token of a prefill chunk (the chunk's
        earlier tokens are written to the pools before attention reads them). Composed: gather_idx the
        rows' context slots. delta (B, 1) int32: rotary position - slot per row (M-RoPE models only)."""
        if self.fused:
            return self.run_paged(ids, gather_idx, lens, pad, write_idx, start, delta, out_rows)
        return self.run(ids, gather_idx, pad, write_idx, start, True, delta=delta, last_index=out_rows)

    def _step(self, ids, start, keys, values, last_only, pad, delta):
        if self.rope_delta and delta is not None:  # a text prefill (delta None) is at its slots
            return self.model.forward_step_delta(ids, start, keys, values, delta, last_only, pad)
        return self.model.forward_step(ids, start, keys, values, last_only, pad)

    def _chunk(self, ids, start, keys, values, pad, last_index, embeds=None, rope_positions=None, delta=None,
               last_only: bool = False):
        """A prefill chunk or a step of rows: (logits at the flat positions `last_index` (O,) -> (O, 1, V),
        else every position's (B, S, V) or, with last_only, the last one's (B, 1, V); new keys, new values)."""
        b, s = ids.shape
        if embeds is None and last_index is not None and self.own_step and not (self.rope_delta and delta is not None):
            h, new_k, new_v = self.model.model(ids, start, keys, values, pad)[:3]
            h = ops.gather(h.reshape(b * s, -1), last_index, 0).expand_dims(1)
            return self.model.logits_from_hidden(h), new_k, new_v
        if embeds is None:
            logits, new_k, new_v = self._step(ids, start, keys, values, last_only, pad, delta)
        elif rope_positions is None:
            logits, new_k, new_v = self.model.forward_embeds(embeds, start, keys, values, last_only, pad)
        else:
            logits, new_k, new_v = self.model.forward_embeds(embeds, start, keys, values, last_only, pad, rope_positions)
        if last_index is not None:
            logits = ops.gather(logits.reshape(b * s, -1), last_index, 0).expand_dims(1)
        return logits, new_k, new_v

    def run_paged(self, ids, tables, lens, pad, write_idx, start, delta, last_index=None):
        """Rows of S tokens, each after lens - S cached ones, with the paged-attention kernel reading the
        pools in place; each layer writes the rows' keys/values to their slots `write_idx` (B, S) before
        its attention (models/common/attention.attend). -> logits at `last_index` (O, 1, V), or (B, S, V)."""
        writes = write_idx.reshape(-1)
        keys = ()
        values = ()
        for i in range(self.num_layers):
            keys = keys + ((self.k_pool, tables, lens, i * self.num_slots, self.block_size, writes),)
            values = values + (self.v_pool,)
        return self._chunk(ids, start, keys, values, pad, last_index, delta=delta)[0]

    def run(self, ids, gather_idx, pad, write_idx, start, last_only: bool, embeds=None, rope_positions=None, delta=None,
            last_index=None):
        """ids (B, S) int32; gather_idx (B, C) int32 slots; pad (B,) int32 left padding;
        write_idx (B, S) int32 slots for the chunk; start = C - S (int32 scalar tensor).
        `embeds` (B, S, hidden): the chunk's input embeddings instead of ids (a prompt with images),
        `rope_positions` (3, B, S) their M-RoPE positions (None: the slots); `delta` (B, 1): decode offsets."""
        b, c = gather_idx.shape
        s = ids.shape[1]
        flat = gather_idx.reshape(-1)
        keys = ()
        values = ()
        for i in range(self.num_layers):
            index = flat + i * self.num_slots
            keys = keys + (ops.gather(self.k_pool, index, 0).reshape(b, c, self.k_heads, self.k_dim).swapaxes(1, 2),)
            values = values + (ops.gather(self.v_pool, index, 0).reshape(b, c, self.v_heads, self.v_dim).swapaxes(1, 2),)
        logits, new_k, new_v = self._chunk(ids, start, keys, values, pad, last_index, embeds, rope_positions, delta,
                                           last_only and last_index is None)
        targets = write_idx.reshape(-1)
        for i in range(self.num_layers):
            index = targets + i * self.num_slots
            k = new_k[i][:, :, c - s:, :].swapaxes(1, 2).reshape(b * s, self.k_heads, self.k_dim)
            v = new_v[i][:, :, c - s:, :].swapaxes(1, 2).reshape(b * s, self.v_heads, self.v_dim)
            logits = ops.depend(logits, ops.scatter_update(self.k_pool, index, k))
            logits = ops.depend(logits, ops.scatter_update(self.v_pool, index, v))
        return logits
