"""Mistral decoder: Llama's layers (GQA attention and SwiGLU MLP, no biases), full causal attention."""

from __future__ import annotations

from mft.models.llama.model import LlamaForCausalLM
from mft.models.mistral.config import MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    """Mistral (transformers' MistralForCausalLM) with `sliding_window: null`: Llama's math and tensor names."""
    config_class = MistralConfig
