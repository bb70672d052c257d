"""Qwen3MoeConfig: which layers are sparse (decoder_sparse_step, mlp_only_layers), expert sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mft.models.common.config import MoeDecoderConfig, FullAttentionOnly


@dataclass
class Qwen3MoeConfig(FullAttentionOnly, MoeDecoderConfig):
    """config.json of a Qwen3-MoE model (model_type qwen3_moe)."""
    num_experts: int = 128
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 768
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: list = field(default_factory=list)
    router_aux_loss_coef: float = 0.001  # kept for config.json; training uses moe_aux_loss_coef

    model_type = "qwen3_moe"
    architecture = "Qwen3MoeForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("mlp_bias",)
    HF_ALIASES: ClassVar[dict] = {"num_experts": ("num_local_experts",)}
    WINDOW_FROM_MAX_WINDOW_LAYERS: ClassVar[bool] = False  # transformers windows every layer (no max_window_layers)
    HF_DEFAULTS: ClassVar[dict] = {"num_key_value_heads": 4, "max_position_embeddings": 32768, "bos_token_id": None, "eos_token_id": None}

    def validate_family(self, bad) -> None:
        super().validate_family(bad)
        for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "decoder_sparse_step"):
            self._positive(bad, key, getattr(self, key))
        if self.num_experts_per_tok > self.num_experts:
            bad("num_experts_per_tok", self.num_experts_per_tok, f"more than num_experts={self.num_experts}")
        if not isinstance(self.mlp_only_layers, (list, tuple)) or any(not isinstance(i, int) or not 0 <= i < self.num_hidden_layers for i in self.mlp_only_layers):
            bad("mlp_only_layers", self.mlp_only_layers, f"expected a list of layer indices below num_hidden_layers={self.num_hidden_layers}")

    def is_sparse(self, index: int) -> bool:
        """True when layer `index` is a mixture-of-experts layer (every decoder_sparse_step-th, not in mlp_only_layers)."""
        return index not in self.mlp_only_layers and (index + 1) % self.decoder_sparse_step == 0

    def hf_extra(self) -> dict:
        return {**super().hf_extra(), "num_local_experts": self.num_experts}
