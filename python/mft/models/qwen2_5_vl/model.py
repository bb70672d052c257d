"""Qwen2_5_VLForConditionalGeneration: vision transformer + Qwen2 decoder with M-RoPE.

Cells carry the names transformers 5 writes: `visual.*`, `model.*` (the
Qwen2 `DecoderModel`: embed_tokens, layers, norm) and `lm_head`.

Inputs as transformers': `input_ids` hold one `image_token_id` per merged
image feature (the processor expands each `<|image_pad|>`), `pixel_values`
are the processor's flattened patches and `image_grid_thw` each image's
(t, h, w) patch grid. Image features replace the embeddings at image-token
positions.

M-RoPE: every position has a (temporal, height, width) triple. Text tokens
use (p, p, p), counting on from the previous token; an image's tokens use
(p0, p0 + row, p0 + column) of their merged grid, and the text after it
continues at max(previous) + 1. The rotary frequencies are split in three
sections (`mrope_section`), each rotated by its own component. After the
prompt every position is text, so decoding uses ordinary RoPE at
cache slot + `delta` (max position + 1 - prompt length).
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import mint, ops

from mft.errors import MftError
from mft.models.base import CausalLM
from mft.models.common.vlm import image_token_mask, place_image_features, with_text_overrides
from mft.models.qwen2_5_vl import hf_mapping
from mft.models.qwen2_5_vl.config import Qwen2_5_VLConfig
from mft.models.qwen2_5_vl.vision import VisionTransformer
from mft.models.qwen2.model import Qwen2ForCausalLM
from mft.parallel.layers import ColumnParallelLinear


def rope_index(ids: np.ndarray, image_token_id: int, grids, merge: int) -> tuple[np.ndarray, np.ndarray]:
    """(3, B, S) M-RoPE positions and (B,) deltas, as transformers' get_rope_index for images.

    Each run of consecutive image tokens is one image, taking the next grid.
    """
    b, s = ids.shape
    positions = np.zeros((3, b, s), dtype=np.int64)
    deltas = np.zeros(b, dtype=np.int64)
    grid_iter = iter(grids)
    for row in range(b):
        is_image = ids[row] == image_token_id
        pieces, pos, i = [], 0, 0
        while i < s:
            j = i
            while j < s and is_image[j] == is_image[i]:
                j += 1
            if not is_image[i]:
                pieces.append(np.broadcast_to(np.arange(pos, pos + j - i), (3, j - i)))
                pos += j - i
            else:
                try:
                    t, h, w = next(grid_iter)
                except StopIteration:
                    raise MftError("qwen2_5_vl: more runs of image tokens in the prompt than images") from None
                gt, gh, gw = int(t), int(h) // merge, int(w) // merge
                if gt * gh * gw != j - i:
                    raise MftError(f"qwen2_5_vl: an image of grid {(int(t), int(h), int(w))} needs {gt * gh * gw} image tokens, the prompt has a run of {j - i}")
                tt, hh, ww = np.meshgrid(np.arange(gt), np.arange(gh), np.arange(gw), indexing="ij")
                pieces.append(np.stack([tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)]) + pos)
                pos += max(gh, gw)
            i = j
        row_pos = np.concatenate(pieces, axis=1)
        positions[:, row] = row_pos
        deltas[row] = row_pos.max() + 1 - s
    return positions, deltas


class _PromptWithImages:
    """What `mft.inference.generate` drives: prefill embeds the prompt with its images
    under M-RoPE; later steps are text steps at slot + delta (compiled once per model)."""

    def __init__(self, model, pixel_values, grids):
        self.model = model
        self.pixel_values = pixel_values
        self.grids = grids
        self.prefilled = False
        self.delta = None
        decode = model.compiled_delta_step()
        self._mft_jit_decode_step = lambda ids, start, keys, values, pad_lengths=None: decode(ids, start, keys, values, self.delta, pad_lengths)

    def new_kv_cache(self, batch_size: int, max_length: int):
        return self.model.new_kv_cache(batch_size, max_length)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only=False, pad_lengths=None):
        if k_caches is None or not self.prefilled:
            self.prefilled = k_caches is not None
            logits, k_caches, v_caches, delta = self.model.prefill(input_ids, self.pixel_values, self.grids, start_pos, k_caches, v_caches, last_only, pad_lengths)
            self.delta = delta
            return logits, k_caches, v_caches
        return self.model.forward_step_delta(input_ids, start_pos, k_caches, v_caches, self.delta, last_only, pad_lengths)


class Qwen2_5_VLForConditionalGeneration(CausalLM):
    config_class = Qwen2_5_VLConfig
    hf_mapping = hf_mapping

    def __init__(self, config: Qwen2_5_VLConfig, dtype=ms.float32):
        super().__init__()
        self.config = config
        self.param_dtype = dtype
        text = Qwen2ForCausalLM(config.text_config, dtype=dtype)  # built for its cells; only they are kept
        self.model = text.model
        self.visual = VisionTransformer(config.vision_config, dtype)
        # model.fused_attention covers the tower too (its kernel runs bidirectionally per window; float32 only)
        self.visual.use_fused_attention(bool(getattr(config.text_config, "fused_attention", False)) and dtype == ms.float32)
        self.tied = config.tie_word_embeddings
        if not self.tied:
            t = config.text_config
            self.lm_head = ColumnParallelLinear(t.hidden_size, t.vocab_size, False, t.initializer_range, dtype)
        sections = list(config.text_config.mrope_section)
        self._sections = [(sum(sections[:k]), sum(sections[:k + 1])) for k in range(3)]

    @classmethod
    def from_config(cls, config, dtype=ms.float32, **overrides):
        return cls(with_text_overrides(config, overrides), dtype=dtype)

    # ---- images ---------------------------------------------------------------
    def embed(self, ids: np.ndarray, pixel_values=None, grids=None):
        """Token embeddings with the image-token positions replaced by the vision tower's merged features."""
        embeds = self.model.embed_tokens(ms.Tensor(ids, ms.int32))
        is_image, n_tokens = image_token_mask("qwen2_5_vl", ids, self.config.image_token_id, pixel_values is not None)
        if pixel_values is None:
            return embeds
        if grids is None:
            raise MftError("qwen2_5_vl: pixel_values need image_grid_thw (each image's (t, h, w) patch grid)")
        grids = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
        pv = np.asarray(pixel_values.asnumpy() if isinstance(pixel_values, ms.Tensor) else pixel_values, dtype=np.float32)
        v = self.config.vision_config
        width = v.in_channels * v.temporal_patch_size * v.patch_size**2
        if pv.ndim != 2 or pv.shape[1] != width or pv.shape[0] != int(np.prod(grids, axis=1).sum()):
            raise MftError(f"qwen2_5_vl: pixel_values must be (sum of t*h*w over image_grid_thw = {int(np.prod(grids, axis=1).sum())}, {width}), got {pv.shape}")
        feats = self.visual(ms.Tensor(pv).astype(self.param_dtype), grids.tolist())
        if n_tokens != feats.shape[0]:
            raise MftError(f"qwen2_5_vl: the prompt holds {n_tokens} image tokens but the images give {feats.shape[0]} features")
        return place_image_features(embeds, is_image, feats)

    def mrope(self, positions: np.ndarray):
        """(3, B, S) positions -> cos, sin (B, 1, S, head_dim) with each frequency section on its axis."""
        inv_freq = self.model.rotary_emb.inv_freq  # (1, head_dim / 2)
        freqs = ms.Tensor(positions.astype(np.float32)).expand_dims(-1) * inv_freq  # (3, B, S, D/2)
        picked = mint.cat([freqs[k][..., lo:hi] for k, (lo, hi) in enumerate(self._sections)], dim=-1)
        emb = mint.cat([picked, picked], dim=-1)
        return ops.cos(emb).expand_dims(1), ops.sin(emb).expand_dims(1)

    # ---- language model ---------------------------------------------------------
    def logits_from_hidden(self, h):
        """Vocabulary logits of the final hidden states (lm_head, or the tied embedding)."""
        if self.tied:
            logits = mint.nn.functional.linear(h, self.model.embed_tokens.weight.astype(h.dtype))
        else:
            logits = self.lm_head(h)
        return logits.astype(ms.float32)

    def _run(self, embeds, cos, sin, slots, mask, k_caches, v_caches, last_only):
        h, new_k, new_v = self.model.run_layers(embeds, cos, sin, mask, slots, k_caches, v_caches)[:3]
        h = self.model.norm(h)
        if last_only:
            h = h[:, -1:, :]
        return self.logits_from_hidden(h), new_k, new_v

    def prefill(self, input_ids, pixel_values, grids, start_pos=None, k_caches=None, v_caches=None, last_only=False, pad_lengths=None):
        """The prompt with its images: (logits, k_caches, v_caches, delta (B, 1) int32 tensor)."""
        ids = input_ids.asnumpy() if isinstance(input_ids, ms.Tensor) else np.asarray(input_ids)
        embeds = self.embed(ids, pixel_values, grids)
        slots, _, mask = self.model.positions_and_mask(embeds, start_pos, k_caches, pad_lengths)
        b, s = ids.shape
        if pixel_values is None:
            positions = np.broadcast_to(np.arange(s), (3, b, s)).copy()
            deltas = np.zeros(b, dtype=np.int64)
        else:
            pads = np.zeros(b, dtype=np.int64) if pad_lengths is None else np.asarray(pad_lengths.asnumpy() if isinstance(pad_lengths, ms.Tensor) else pad_lengths).astype(np.int64)
            positions = np.ones((3, b, s), dtype=np.int64)  # left padding: masked anyway (transformers puts 1)
            deltas = np.zeros(b, dtype=np.int64)
            grids_np = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
            used = 0
            for row in range(b):
                row_ids = ids[row:row + 1, pads[row]:]
                runs = int(np.sum(np.diff(np.concatenate([[0], (row_ids[0] == self.config.image_token_id).astype(np.int8)])) == 1))
                pos, delta = rope_index(row_ids, self.config.image_token_id, grids_np[used:used + runs], self.config.vision_config.spatial_merge_size)
                used += runs
                positions[:, row, pads[row]:] = pos[:, 0]
                deltas[row] = delta[0]
        if k_caches is not None and start_pos is not None and int(start_pos) != 0:
            raise MftError("qwen2_5_vl: a prompt with images must be prefilled from cache slot 0")
        cos, sin = self.mrope(positions)
        logits, k_caches, v_caches = self._run(embeds, cos, sin, slots, mask, k_caches, v_caches, last_only)
        return logits, k_caches, v_caches, ms.Tensor(deltas.reshape(b, 1).astype(np.int32))

    # ---- serving (mft.serving.engine): a prompt with images, then text steps -------------------
    def serving_prompt(self, ids: np.ndarray, pixel_values=None, image_grid_thw=None):
        """(embeddings (1, S, hidden) with image features in place, M-RoPE positions (3, 1, S), delta):
        the engine prefills the prompt in chunks at these positions, and every later token at
        its cache slot + delta (`forward_step_delta`)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        embeds = self.embed(ids, pixel_values, image_grid_thw)
        if pixel_values is None:
            return embeds, None, 0
        grids = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
        positions, deltas = rope_index(ids, self.config.image_token_id, grids, self.config.vision_config.spatial_merge_size)
        return embeds, positions, int(deltas[0])

    def embed_text(self, input_ids):
        """The token embeddings of `input_ids` (no image features)."""
        return self.model.embed_tokens(input_ids)

    def forward_embeds(self, embeds, start_pos=None, k_caches=None, v_caches=None, last_only: bool = False, pad_lengths=None,
                       rope_positions=None):
        """The language model on input embeddings (B, S, hidden) at M-RoPE `rope_positions` (3, B, S)
        (None: text positions, the cache slots): (logits, k_caches, v_caches)."""
        slots, positions, mask = self.model.positions_and_mask(embeds, start_pos, k_caches, pad_lengths)
        if rope_positions is None:
            cos, sin = self.model.rotary_emb(positions)
        else:
            cos, sin = self.mrope(np.asarray(rope_positions))
        return self._run(embeds, cos, sin, slots, mask, k_caches, v_caches, last_only)

    def forward_step_delta(self, input_ids, start_pos, k_caches, v_caches, delta, last_only: bool = False, pad_lengths=None):
        """A text step at positions slot (- left padding) + delta; delta (B, 1) int32."""
        embeds = self.model.embed_tokens(input_ids)
        slots, positions, mask = self.model.positions_and_mask(input_ids, start_pos, k_caches, pad_lengths)
        if positions.ndim == 1:
            positions = positions.reshape(1, -1)
        cos, sin = self.model.rotary_emb(positions + delta)
        return self._run(embeds, cos, sin, slots, mask, k_caches, v_caches, last_only)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only: bool = False, pad_lengths=None):
        """Text only (no images in the sequence): M-RoPE with three equal components is plain RoPE."""
        embeds = self.model.embed_tokens(input_ids)
        slots, positions, mask = self.model.positions_and_mask(input_ids, start_pos, k_caches, pad_lengths)
        cos, sin = self.model.rotary_emb(positions)
        return self._run(embeds, cos, sin, slots, mask, k_caches, v_caches, last_only)

    def compiled_delta_step(self):
        """The jitted one-token decode step with rope position deltas (multimodal rope), built once per model."""
        fn = self.__dict__.get("_mft_jit_delta_step")
        if fn is None:

            @ms.jit
            def fn(ids, start, keys, values, delta, pad_lengths=None):
                return self.forward_step_delta(ids, start, keys, values, delta, True, pad_lengths)

            self.__dict__["_mft_jit_delta_step"] = fn
        return fn

    def construct(self, input_ids, pixel_values=None, image_grid_thw=None):
        """input_ids (B, S) with expanded image tokens -> fp32 logits (B, S, vocab)."""
        return self.prefill(input_ids, pixel_values, image_grid_thw)[0]

    # ---- inference ----------------------------------------------------------------
    def new_kv_cache(self, batch_size: int, max_length: int):
        from mft.inference.kv_cache import KVCache

        t = self.config.text_config
        return KVCache(t.num_hidden_layers, batch_size, t.num_key_value_heads, max_length, t.head_dim, self.param_dtype)

    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False, pixel_values=None, image_grid_thw=None, **kwargs):
        """As CausalLM.generate; `pixel_values` + `image_grid_thw` are the prompt's images (tokens already expanded)."""
        from mft.inference.generate import generate

        target = self if pixel_values is None else _PromptWithImages(self, pixel_values, image_grid_thw)
        return generate(target, input_ids, max_new_tokens=max_new_tokens, do_sample=do_sample, **kwargs)

    def save_pretrained(self, folder: str, values: dict | None = None) -> None:
        from mft.models import checkpoint_io

        config = self.config.to_hf_dict()
        config["dtype"] = {ms.float32: "float32", ms.float16: "float16", ms.bfloat16: "bfloat16"}[self.param_dtype]
        t = self.config.text_config
        generation = {"bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id, "pad_token_id": t.pad_token_id}
        checkpoint_io.write_pretrained(folder, config, self.hf_state_dict(values), generation)
