"""Qwen3Config: DecoderConfig (attention_bias on q/k/v/o); the MLP has no bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mft.models.common.config import DecoderConfig, check_no_sliding_window


@dataclass
class Qwen3Config(DecoderConfig):
    model_type = "qwen3"
    architecture = "Qwen3ForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("mlp_bias",)
    HF_CHECKED_KEYS: ClassVar[frozenset] = frozenset({"use_sliding_window", "sliding_window", "layer_types"})

    @classmethod
    def check_hf_keys(cls, d, bad):
        super().check_hf_keys(d, bad)
        check_no_sliding_window(d, bad)

    def hf_extra(self) -> dict:
        return {"use_sliding_window": False}
