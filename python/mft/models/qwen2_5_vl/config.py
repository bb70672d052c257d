"""Qwen2.5-VL configs from a Hugging Face Qwen2_5_VLForConditionalGeneration config.json.

`VisionConfig` is `vision_config` (qwen2_5_vl_vision); the `text_config`
(qwen2_5_vl_text) is a Qwen2 decoder whose rope parameters carry
`mrope_section` (how many rotary frequencies follow the temporal, height
and width position), read by `Qwen2_5_VLTextConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mft.errors import MftError
from mft.models.common.config import HF_HARMLESS_KEYS, SUPPORTED_DTYPES
from mft.models.common.vlm import TextConfigView
from mft.models.llava.config import ACTIVATIONS, _bad, _positive
from mft.models.qwen2.config import Qwen2Config


@dataclass
class Qwen2_5_VLTextConfig(Qwen2Config):
    mrope_section: tuple = (16, 24, 24)

    model_type = "qwen2_5_vl_text"
    architecture = "Qwen2_5_VLForConditionalGeneration"
    # M-RoPE (Qwen2_5_VLForConditionalGeneration.mrope) reads the rotary frequencies only, not yarn's cos/sin factor.
    ROPE_TYPES: ClassVar[tuple] = tuple(t for t in Qwen2Config.ROPE_TYPES if t != "yarn")
    HF_DEFAULTS: ClassVar[dict] = {"rope_theta": 1e6, "rms_norm_eps": 1e-5, "max_position_embeddings": 32768,
                                   "bos_token_id": 151643, "eos_token_id": 151645}  # transformers' Qwen2_5_VLTextConfig

    def validate_family(self, bad) -> None:
        super().validate_family(bad)
        self.mrope_section = tuple(self.mrope_section)
        if len(self.mrope_section) != 3 or sum(self.mrope_section) != self.head_dim // 2:
            bad("rope_parameters.mrope_section", list(self.mrope_section), f"expected 3 numbers summing to head_dim / 2 = {self.head_dim // 2}")

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json"):
        """The language model's config of a Qwen2.5-VL config.json dict (text_config or the top level), checked."""
        d = dict(d)
        section = None
        for key in ("rope_parameters", "rope_scaling"):
            if isinstance(d.get(key), dict) and "mrope_section" in d[key]:
                rope = dict(d[key])
                section = rope.pop("mrope_section")
                if rope.get("rope_type", rope.get("type")) == "mrope":  # the older spelling of the same thing
                    rope["rope_type"] = "default"
                    rope.pop("type", None)
                d[key] = rope
        if section is None:
            raise MftError(f"{source}: rope_parameters.mrope_section is missing (Qwen2.5-VL's language model needs it)")
        d["model_type"] = "qwen2"
        d["mrope_section"] = section  # read as the field of that name
        return super().from_hf_dict(d, source)

    def to_hf_dict(self) -> dict:
        out = super().to_hf_dict()
        out["model_type"] = self.model_type
        out.pop("architectures", None)
        out.pop("mrope_section")
        out["rope_parameters"] = {**out["rope_parameters"], "mrope_section": list(self.mrope_section)}
        out["rope_scaling"] = None
        return out


@dataclass
class VisionConfig:
    depth: int = 32
    hidden_size: int = 3584
    hidden_act: str = "silu"
    intermediate_size: int = 3420
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    tokens_per_second: int = 4
    window_size: int = 112
    out_hidden_size: int = 3584
    fullatt_block_indexes: tuple = (7, 15, 23, 31)
    initializer_range: float = 0.02
    rope_theta: float = 10000.0

    model_type = "qwen2_5_vl_vision"
    # in_chans / spatial_patch_size: duplicates published files carry; transformers 5 reads in_channels / patch_size.
    IGNORED = frozenset({"dtype", "torch_dtype", "rope_parameters", "in_chans", "spatial_patch_size"})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_dict(cls, d: dict, source: str) -> "VisionConfig":
        """The vision tower config of config.json's vision_config dict, checked."""
        bad = _bad(source)
        if d.get("model_type", cls.model_type) not in (cls.model_type, "qwen2_5_vl"):  # older files say qwen2_5_vl
            bad("model_type", d.get("model_type"), f"expected {cls.model_type!r}")
        rope = d.get("rope_parameters") or {}
        if rope.get("rope_type", "axial") != "axial":
            bad("rope_parameters.rope_type", rope.get("rope_type"), "the vision tower's rotary embedding is 'axial'")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names and k not in HF_HARMLESS_KEYS and k not in cls.IGNORED)
        if unknown:
            bad(unknown[0], d[unknown[0]], f"unknown to mft's Qwen2.5-VL vision tower (unknown keys: {', '.join(unknown)})")
        kwargs = {k: d[k] for k in names if k in d and d[k] is not None}
        if "fullatt_block_indexes" in kwargs:
            kwargs["fullatt_block_indexes"] = tuple(kwargs["fullatt_block_indexes"])
        if "rope_theta" in rope:
            kwargs["rope_theta"] = float(rope["rope_theta"])
        cfg = cls(**kwargs)
        for key in ("depth", "hidden_size", "intermediate_size", "num_heads", "in_channels", "patch_size", "spatial_merge_size",
                    "temporal_patch_size", "window_size", "out_hidden_size"):
            _positive(bad, key, getattr(cfg, key))
        if cfg.hidden_size % cfg.num_heads or cfg.head_dim % 4:
            bad("num_heads", cfg.num_heads, f"hidden_size / num_heads must be a multiple of 4 (2-D rotary), hidden_size={cfg.hidden_size}")
        if cfg.hidden_act not in ACTIVATIONS:
            bad("hidden_act", cfg.hidden_act, f"implemented: {', '.join(ACTIVATIONS)}")
        if any(not 0 <= i < cfg.depth for i in cfg.fullatt_block_indexes):
            bad("fullatt_block_indexes", list(cfg.fullatt_block_indexes), f"block indices run from 0 to {cfg.depth - 1}")
        return cfg

    def to_hf_dict(self) -> dict:
        """The vision_config dict written to config.json."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rope_theta"}
        out["fullatt_block_indexes"] = list(self.fullatt_block_indexes)
        out["model_type"] = self.model_type
        out["rope_parameters"] = {"rope_theta": self.rope_theta, "rope_type": "axial"}
        return out


@dataclass
class Qwen2_5_VLConfig(TextConfigView):  # TextConfigView: vocab_size, hidden_size, bos/eos/pad ids of text_config
    vision_config: VisionConfig = field(default_factory=VisionConfig)
    text_config: Any = None
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
    dtype: str = "float32"

    model_type = "qwen2_5_vl"
    architecture = "Qwen2_5_VLForConditionalGeneration"

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> "Qwen2_5_VLConfig":
        """The Qwen2.5-VL config of a config.json dict (text, vision, image/video token ids), checked."""
        bad = _bad(source)
        vision, text = d.get("vision_config"), d.get("text_config")
        names = {f.name for f in dataclasses.fields(cls)} - {"vision_config", "text_config", "dtype"}
        known = names | {"vision_config", "text_config", "dtype", "torch_dtype", "vision_token_id"} | HF_HARMLESS_KEYS
        if not isinstance(vision, dict):
            bad("vision_config", vision, "expected an object")
        if text is None:  # published files are flat: the language model's keys at the top level (transformers reads them so)
            text = {k: v for k, v in d.items() if k not in known or k in ("dtype", "torch_dtype", "tie_word_embeddings")}
            text_cfg = Qwen2_5_VLTextConfig.from_hf_dict(text, source=source)
            known = known | set(text)
        elif not isinstance(text, dict):
            bad("text_config", text, "expected an object, or the language model's keys at the top level")
        else:
            text_cfg = Qwen2_5_VLTextConfig.from_hf_dict(text, source=f"{source}: text_config")
        vision_cfg = VisionConfig.from_hf_dict(dict(vision), source=f"{source}: vision_config")
        kwargs = {k: d[k] for k in names if k in d and d[k] is not None}
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            bad(unknown[0], d[unknown[0]], f"unknown to mft's qwen2_5_vl model (unknown keys: {', '.join(unknown)})")
        dtype = d.get("dtype", d.get("torch_dtype")) or text_cfg.dtype
        if dtype not in SUPPORTED_DTYPES:
            bad("dtype", dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")
        if vision_cfg.out_hidden_size != text_cfg.hidden_size:
            bad("vision_config.out_hidden_size", vision_cfg.out_hidden_size, f"must equal text_config.hidden_size={text_cfg.hidden_size}")
        tie = bool(kwargs.pop("tie_word_embeddings", False)) or text_cfg.tie_word_embeddings
        cfg = cls(vision_config=vision_cfg, text_config=text_cfg, tie_word_embeddings=tie, dtype=dtype, **kwargs)
        for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            value = getattr(cfg, key)
            if not isinstance(value, int) or not 0 <= value < text_cfg.vocab_size:
                bad(key, value, f"must be a token id below text_config.vocab_size={text_cfg.vocab_size}")
        return cfg

    def to_hf_dict(self) -> dict:
        """The config.json dict transformers reads for this Qwen2.5-VL model."""
        return {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vision_config": self.vision_config.to_hf_dict(),
            "text_config": self.text_config.to_hf_dict(),
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.dtype,
        }
