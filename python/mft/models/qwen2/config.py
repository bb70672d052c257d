"""Qwen2Config: DecoderConfig; q/k/v always carry a bias, o_proj and the MLP never do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mft.models.common.config import DecoderConfig, FullAttentionOnly


@dataclass
class Qwen2Config(FullAttentionOnly, DecoderConfig):
    """config.json of a Qwen2 model (model_type qwen2)."""
    model_type = "qwen2"
    architecture = "Qwen2ForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("attention_bias", "mlp_bias")
    HF_DEFAULTS: ClassVar[dict] = {"num_key_value_heads": 32, "max_position_embeddings": 32768, "bos_token_id": None, "eos_token_id": None}
