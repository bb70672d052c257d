"""LlamaConfig: Llama 2/3 hyper-parameters (all shared with DecoderConfig)."""

from __future__ import annotations

from dataclasses import dataclass

from mft.models.common.config import SUPPORTED_DTYPES, DecoderConfig

__all__ = ["LlamaConfig", "SUPPORTED_DTYPES"]


@dataclass
class LlamaConfig(DecoderConfig):
    """config.json of a Llama model (model_type llama)."""
    model_type = "llama"
    architecture = "LlamaForCausalLM"
