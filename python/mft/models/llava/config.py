"""LLaVA configs read from a Hugging Face LlavaForConditionalGeneration config.json.

`ClipVisionConfig` is the `vision_config` (transformers' clip_vision_model);
the `text_config` is any registered text family's config (Llama, Qwen2, ...),
parsed by that family. Unknown keys and values mft does not implement are
errors naming the key, as for the text families.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mft.errors import MftError
from mft.models.common.config import HF_HARMLESS_KEYS, SUPPORTED_DTYPES
from mft.models.common.vlm import TextConfigView

# Activations the vision MLP and the projector implement (transformers' ACT2FN names).
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu", "silu")
SELECT_STRATEGIES = ("default", "full")


def _bad(source: str):
    def bad(key: str, value: Any, why: str):
        raise MftError(f"{source}: {key}={value!r} is not supported: {why}")

    return bad


def _positive(bad, key, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        bad(key, value, "expected a positive integer")


@dataclass
class ClipVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 512  # CLIP's contrastive head width: not part of the vision tower LLaVA uses
    initializer_range: float = 0.02
    initializer_factor: float = 1.0

    model_type = "clip_vision_model"
    IGNORED = frozenset({"dtype", "torch_dtype", "vocab_size", "attention_dropout", "dropout"})

    def validate(self, source: str = "vision_config") -> None:
        """Checks the vision tower's sizes; MftError naming `source` and the key otherwise."""
        bad = _bad(source)
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels", "image_size", "patch_size"):
            _positive(bad, key, getattr(self, key))
        if self.hidden_size % self.num_attention_heads:
            bad("num_attention_heads", self.num_attention_heads, f"must divide hidden_size={self.hidden_size}")
        if self.image_size % self.patch_size:
            bad("patch_size", self.patch_size, f"must divide image_size={self.image_size}")
        if self.hidden_act not in ACTIVATIONS:
            bad("hidden_act", self.hidden_act, f"implemented: {', '.join(ACTIVATIONS)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_hf_dict(cls, d: dict, source: str) -> "ClipVisionConfig":
        """The vision tower config of config.json's vision_config dict, checked."""
        bad = _bad(source)
        if d.get("model_type", cls.model_type) != cls.model_type:
            bad("model_type", d.get("model_type"), f"the LLaVA vision tower mft implements is {cls.model_type!r} (CLIP)")
        if float(d.get("attention_dropout", 0.0) or 0.0) != 0.0:
            bad("attention_dropout", d["attention_dropout"], "attention dropout is not implemented")
        for key in ("image_size", "patch_size"):
            value = d.get(key)
            if isinstance(value, (list, tuple)):
                if len(value) != 2 or value[0] != value[1]:
                    bad(key, value, "only square sizes are implemented")
                d = {**d, key: value[0]}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names and k not in HF_HARMLESS_KEYS and k not in cls.IGNORED)
        if unknown:
            bad(unknown[0], d[unknown[0]], f"unknown to mft's CLIP vision tower (unknown keys: {', '.join(unknown)})")
        cfg = cls(**{k: d[k] for k in names if k in d and d[k] is not None})
        cfg.validate(source)
        return cfg

    def to_hf_dict(self) -> dict:
        """The vision_config dict written to config.json."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update({"model_type": self.model_type, "attention_dropout": 0.0})
        return out


@dataclass
class LlavaConfig(TextConfigView):  # TextConfigView: vocab_size, hidden_size, bos/eos/pad ids of text_config
    vision_config: ClipVisionConfig = field(default_factory=ClipVisionConfig)
    text_config: Any = None  # a text family's DecoderConfig
    image_token_index: int = 32000
    image_seq_length: int = 576
    projector_hidden_act: str = "gelu"
    vision_feature_select_strategy: str = "default"
    vision_feature_layer: int | tuple = -2
    multimodal_projector_bias: bool = True
    tie_word_embeddings: bool = False
    dtype: str = "float32"

    model_type = "llava"
    architecture = "LlavaForConditionalGeneration"
    # vocab_size: LLaVA-1.5 files repeat text_config's at the top level; transformers 5 reads text_config's.
    IGNORED = frozenset({"ignore_index", "pad_token_id", "bos_token_id", "eos_token_id", "vocab_size"})

    @property
    def feature_layers(self) -> tuple:
        layer = self.vision_feature_layer
        return (layer,) if isinstance(layer, int) else tuple(layer)

    @property
    def image_tokens_per_image(self) -> int:
        """Placeholder tokens one image becomes: its patches (+ the class token with strategy 'full')."""
        return self.vision_config.num_patches + (1 if self.vision_feature_select_strategy == "full" else 0)

    def validate(self, source: str = "config") -> None:
        """Checks the text and vision configs and the projector settings; MftError naming `source` and the key."""
        bad = _bad(source)
        if self.vision_feature_select_strategy not in SELECT_STRATEGIES:
            bad("vision_feature_select_strategy", self.vision_feature_select_strategy, f"expected one of {', '.join(SELECT_STRATEGIES)}")
        if self.projector_hidden_act not in ACTIVATIONS:
            bad("projector_hidden_act", self.projector_hidden_act, f"implemented: {', '.join(ACTIVATIONS)}")
        n = self.vision_config.num_hidden_layers
        if not self.feature_layers:
            bad("vision_feature_layer", self.vision_feature_layer, "expected a layer index or a non-empty list of them")
        for layer in self.feature_layers:
            if not isinstance(layer, int) or isinstance(layer, bool) or not -(n + 1) <= layer <= n:
                bad("vision_feature_layer", self.vision_feature_layer, f"hidden-state indices run from {-(n + 1)} to {n} for {n} vision layers")
        vocab = self.text_config.vocab_size
        if not isinstance(self.image_token_index, int) or not 0 <= self.image_token_index < vocab:
            bad("image_token_index", self.image_token_index, f"must be a token id below text_config.vocab_size={vocab}")
        if self.dtype not in SUPPORTED_DTYPES:
            bad("dtype", self.dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> "LlavaConfig":
        """The LLaVA config of a config.json dict (text_config, vision_config, image token, projector), checked."""
        from mft.models.auto import family_for_config

        bad = _bad(source)
        vision = d.get("vision_config")
        text = d.get("text_config")
        if not isinstance(vision, dict):
            bad("vision_config", vision, "expected an object (the CLIP vision tower's config)")
        if not isinstance(text, dict):
            bad("text_config", text, "expected an object (the language model's config)")
        text = dict(text)
        text.setdefault("model_type", "llama")
        family = family_for_config({"model_type": text["model_type"]}, f"{source}: text_config")
        if family.CONFIG_CLASS is cls:
            bad("text_config.model_type", text["model_type"], "the language model must be a text family")
        text_cfg = family.CONFIG_CLASS.from_hf_dict(text, source=f"{source}: text_config")
        vision_cfg = ClipVisionConfig.from_hf_dict(dict(vision), source=f"{source}: vision_config")
        names = {f.name for f in dataclasses.fields(cls)} - {"vision_config", "text_config", "dtype"}
        aliases = {"image_token_id": "image_token_index"}
        kwargs = {}
        for key, value in d.items():
            key = aliases.get(key, key)
            if key in names and value is not None:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        known = names | set(aliases) | {"vision_config", "text_config", "dtype", "torch_dtype"} | HF_HARMLESS_KEYS | cls.IGNORED
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            bad(unknown[0], d[unknown[0]], f"unknown to mft's llava model (unknown keys: {', '.join(unknown)})")
        dtype = d.get("dtype", d.get("torch_dtype")) or text_cfg.dtype
        tie = bool(kwargs.pop("tie_word_embeddings", False)) or text_cfg.tie_word_embeddings  # as transformers' LlavaConfig
        cfg = cls(vision_config=vision_cfg, text_config=text_cfg, tie_word_embeddings=tie, dtype=dtype, **kwargs)
        cfg.validate(source)
        return cfg

    def to_hf_dict(self) -> dict:
        """The config.json dict transformers reads for this LLaVA model."""
        layer = self.vision_feature_layer
        return {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vision_config": self.vision_config.to_hf_dict(),
            "text_config": self.text_config.to_hf_dict(),
            "image_token_index": self.image_token_index,
            "image_seq_length": self.image_seq_length,
            "projector_hidden_act": self.projector_hidden_act,
            "vision_feature_select_strategy": self.vision_feature_select_strategy,
            "vision_feature_layer": layer if isinstance(layer, int) else list(layer),
            "multimodal_projector_bias": self.multimodal_projector_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.dtype,
        }
