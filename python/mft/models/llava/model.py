"""LlavaForConditionalGeneration: CLIP vision tower + 2-layer MLP projector + a text family's decoder.

Cells carry transformers 5's names: `model.vision_tower.*`,
`model.multi_modal_projector.linear_{1,2}`, `model.language_model.*` (the
text family's DecoderModel: embed_tokens, layers, norm) and `lm_head`.

Inputs follow transformers: `input_ids` already hold one `image_token_index`
per image feature (the processor expands each `<image>`), `pixel_values`
(num_images, C, H, W) are the processed images in prompt order. The
embeddings at image-token positions are replaced by the projected image
features, then the language model runs on the embeddings as usual.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import mint, nn

from mft.errors import MftError
from mft.models.base import CausalLM
from mft.models.llava import hf_mapping
from mft.models.common.vlm import image_token_mask, place_image_features, with_text_overrides
from mft.models.llava.config import LlavaConfig
from mft.models.llava.vision import ClipVisionTower, activation
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear


class LlavaProjector(nn.Cell):
    def __init__(self, cfg: LlavaConfig, dtype):
        super().__init__()
        vision, text = cfg.vision_config.hidden_size * len(cfg.feature_layers), cfg.text_config.hidden_size
        std = cfg.text_config.initializer_range
        self.linear_1 = ColumnParallelLinear(vision, text, cfg.multimodal_projector_bias, std, dtype)
        self.act = activation(cfg.projector_hidden_act)
        self.linear_2 = RowParallelLinear(text, text, cfg.multimodal_projector_bias, std, dtype)

    def construct(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaModel(nn.Cell):
    def __init__(self, cfg: LlavaConfig, language_model: nn.Cell, dtype):
        super().__init__()
        self.vision_tower = ClipVisionTower(cfg.vision_config, dtype)
        # model.fused_attention covers the tower too (its kernel runs bidirectionally; float32 only)
        self.vision_tower.use_fused_attention(bool(getattr(cfg.text_config, "fused_attention", False)) and dtype == ms.float32)
        self.multi_modal_projector = LlavaProjector(cfg, dtype)
        self.language_model = language_model


class _PromptWithImages:
    """What `mft.inference.generate` drives: the first (prefill) call embeds the
    prompt with its images; later one-token steps are the model's own text steps."""

    def __init__(self, model, pixel_values):
        from mft.inference.generate import compiled_decode_step

        self.model = model
        self.pixel_values = pixel_values
        self.prefilled = False
        self._mft_jit_decode_step = compiled_decode_step(model)

    def new_kv_cache(self, batch_size: int, max_length: int):
        return self.model.new_kv_cache(batch_size, max_length)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only=False, pad_lengths=None):
        if k_caches is None or not self.prefilled:  # without a cache every call is a full forward over the prompt
            self.prefilled = k_caches is not None
            embeds = self.model.embed(input_ids, self.pixel_values)
            return self.model.forward_embeds(embeds, start_pos, k_caches, v_caches, last_only, pad_lengths)
        return self.model.forward_step(input_ids, start_pos, k_caches, v_caches, last_only, pad_lengths)


class LlavaForConditionalGeneration(CausalLM):
    config_class = LlavaConfig
    hf_mapping = hf_mapping

    def __init__(self, config: LlavaConfig, dtype=ms.float32):
        super().__init__()
        from mft.models.auto import FAMILIES, _family

        self.config = config
        self.param_dtype = dtype
        family = _family(config.text_config.model_type) if config.text_config.model_type in FAMILIES else None
        if family is None:
            raise MftError(f"llava: text_config.model_type {config.text_config.model_type!r} is not a registered text family")
        text = family.MODEL_CLASS(config.text_config, dtype=dtype)  # built for its cells; only they are kept
        self.model = LlavaModel(config, text.model, dtype)
        self.tied = config.tie_word_embeddings
        if not self.tied:
            self.lm_head = ColumnParallelLinear(config.text_config.hidden_size, config.text_config.vocab_size, False, config.text_config.initializer_range, dtype)

    @classmethod
    def from_config(cls, config, dtype=ms.float32, **overrides):
        return cls(with_text_overrides(config, overrides), dtype=dtype)

    def load_hf_state_dict(self, tensors: dict, source: str = "state dict") -> None:
        """Either checkpoint spelling (hf_mapping) is read; then every tensor is checked as for text families."""
        super().load_hf_state_dict(hf_mapping.canonical_tensors(tensors, source), source)

    # ---- images -------------------------------------------------------------
    def image_features(self, pixel_values):
        """(num_images, C, H, W) -> projected features (num_images, tokens per image, text hidden)."""
        cfg = self.config
        pixel_values = pixel_values if isinstance(pixel_values, ms.Tensor) else ms.Tensor(np.asarray(pixel_values, dtype=np.float32))
        size = cfg.vision_config.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (cfg.vision_config.num_channels, size, size):
            raise MftError(f"llava: pixel_values must be (num_images, {cfg.vision_config.num_channels}, {size}, {size}), got {tuple(pixel_values.shape)}")
        feats = self.model.vision_tower.select(pixel_values.astype(self.param_dtype), cfg.feature_layers, cfg.vision_feature_select_strategy)
        return self.model.multi_modal_projector(feats)

    def embed(self, input_ids, pixel_values=None):
        """Token embeddings with image-token positions replaced by image features, (B, S, hidden)."""
        ids = input_ids.asnumpy() if isinstance(input_ids, ms.Tensor) else np.asarray(input_ids)
        ids_t = ms.Tensor(ids, ms.int32)
        embeds = self.model.language_model.embed_tokens(ids_t)
        is_image, n_tokens = image_token_mask("llava", ids, self.config.image_token_index, pixel_values is not None)
        if pixel_values is None:
            return embeds
        feats = self.image_features(pixel_values)
        num_images, per_image, hidden = feats.shape
        if n_tokens != num_images * per_image:
            raise MftError(
                f"llava: the prompt holds {n_tokens} image tokens but {num_images} image(s) give {num_images * per_image} features "
                f"({per_image} each); expand each image placeholder to {per_image} tokens (mft.models.llava.processor)"
            )
        return place_image_features(embeds, is_image, feats.reshape(num_images * per_image, hidden))

    # ---- language model ------------------------------------------------------
    def logits_from_hidden(self, h):
        """Vocabulary logits of the language model's final hidden states (lm_head, or the tied embedding)."""
        if self.tied:
            logits = mint.nn.functional.linear(h, self.model.language_model.embed_tokens.weight.astype(h.dtype))
        else:
            logits = self.lm_head(h)
        return logits.astype(ms.float32)

    def forward_embeds(self, embeds, start_pos=None, k_caches=None, v_caches=None, last_only: bool = False, pad_lengths=None):
        """The language model on input embeddings (B, S, hidden): (logits, k_caches, v_caches)."""
        lm = self.model.language_model
        slots, positions, mask = lm.positions_and_mask(embeds, start_pos, k_caches, pad_lengths)  # reads only shape[1]
        cos, sin = lm.rotary_emb(positions)
        h, new_k, new_v = lm.run_layers(embeds, cos, sin, mask, slots, k_caches, v_caches)[:3]
        h = lm.norm(h)
        if last_only:
            h = h[:, -1:, :]
        return self.logits_from_hidden(h), new_k, new_v

    # ---- serving (mft.serving.engine): a prompt with images, then text steps -------------------
    def serving_prompt(self, ids: np.ndarray, pixel_values=None):
        """(embeddings (1, S, hidden) with image features in place, rotary positions or None, delta 0):
        LLaVA's positions are the cache slots, so decoding needs no offset."""
        return self.embed(ids, pixel_values), None, 0

    def embed_text(self, input_ids):
        """The language model's token embeddings of `input_ids` (no image features)."""
        return self.model.language_model.embed_tokens(input_ids)

    def forward_step(self, input_ids, start_pos, k_caches, v_caches, last_only: bool = False, pad_lengths=None):
        """A text-only step (decoding after the prompt), as DecoderForCausalLM.forward_step."""
        return self.forward_embeds(self.model.language_model.embed_tokens(input_ids), start_pos, k_caches, v_caches, last_only, pad_lengths)

    def construct(self, input_ids, pixel_values=None):
        """input_ids (B, S) with expanded image tokens, pixel_values (num_images, C, H, W) -> fp32 logits (B, S, vocab)."""
        return self.forward_embeds(self.embed(input_ids, pixel_values))[0]

    # ---- inference -------------------------------------------------------------
    def new_kv_cache(self, batch_size: int, max_length: int):
        from mft.inference.kv_cache import KVCache

        t = self.config.text_config
        return KVCache(t.num_hidden_layers, batch_size, t.num_key_value_heads, max_length, t.head_dim, self.param_dtype)

    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False, pixel_values=None, **kwargs):
        """As CausalLM.generate; `pixel_values` are the prompt's images (their tokens already expanded)."""
        from mft.inference.generate import generate

        target = self if pixel_values is None else _PromptWithImages(self, pixel_values)
        return generate(target, input_ids, max_new_tokens=max_new_tokens, do_sample=do_sample, **kwargs)

    def save_pretrained(self, folder: str, values: dict | None = None) -> None:
        from mft.models import checkpoint_io

        config = self.config.to_hf_dict()
        config["dtype"] = {ms.float32: "float32", ms.float16: "float16", ms.bfloat16: "bfloat16"}[self.param_dtype]
        t = self.config.text_config
        generation = {"bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id, "pad_token_id": t.pad_token_id}
        checkpoint_io.write_pretrained(folder, config, self.hf_state_dict(values), generation)
