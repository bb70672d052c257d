"""Qwen3Config: DecoderConfig (attention_bias on q/k/v/o); the MLP has no bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mft.models.common.config import DecoderConfig, FullAttentionOnly


@dataclass
class Qwen3Config(FullAttentionOnly, DecoderConfig):
    """config.json of a Qwen3 model (model_type qwen3)."""
    model_type = "qwen3"
    architecture = "Qwen3ForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("mlp_bias",)
