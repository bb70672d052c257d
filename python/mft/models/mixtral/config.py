"""MixtralConfig: num_local_experts experts of intermediate_size, top num_experts_per_tok."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mft.models.common.config import MoeDecoderConfig


@dataclass
class MixtralConfig(MoeDecoderConfig):
    """config.json of a Mixtral model (model_type mixtral)."""
    num_local_experts: int = 8
    num_experts_per_tok: int = 2
    router_aux_loss_coef: float = 0.001  # kept for config.json; training uses moe_aux_loss_coef
    router_jitter_noise: float = 0.0
    sliding_window: int | None = None

    model_type = "mixtral"
    architecture = "MixtralForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("attention_bias", "mlp_bias")
    HF_DEFAULTS: ClassVar[dict] = {"rope_theta": 1e6, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "num_key_value_heads": 8}

    def validate_family(self, bad) -> None:
        super().validate_family(bad)
        self._positive(bad, "num_local_experts", self.num_local_experts)
        self._positive(bad, "num_experts_per_tok", self.num_experts_per_tok)
        if self.num_experts_per_tok > self.num_local_experts:
            bad("num_experts_per_tok", self.num_experts_per_tok, f"more than num_local_experts={self.num_local_experts}")
        if self.router_jitter_noise:
            bad("router_jitter_noise", self.router_jitter_noise, "router jitter is not implemented (use 0.0)")
        if self.sliding_window is not None:
            bad("sliding_window", self.sliding_window, "sliding-window attention is not implemented (use null)")
