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
    HF_DEFAULTS: ClassVar[dict] = {"head_dim": 128, "num_key_value_heads": 32, "max_position_embeddings": 32768, "bos_token_id": None, "eos_token_id": None}
