"""DeepseekV3Config: MLA ranks and head dims, routed/shared experts, group-limited routing, MTP depth.

`head_dim` follows transformers' convention (= qk_rope_head_dim, the rotated
width); a query/key head is qk_nope_head_dim + qk_rope_head_dim wide.
The original remote-code keys (topk_method, scoring_func, moe_layer_freq, ...)
are accepted only with the values this implementation computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from mft.models.common.config import MoeDecoderConfig


@dataclass
class DeepseekV3Config(MoeDecoderConfig):
    """config.json of a DeepSeek-V3 model (model_type deepseek_v3)."""
    vocab_size: int = 129280
    hidden_size: int = 7168
    intermediate_size: int = 18432
    moe_intermediate_size: int = 2048
    num_hidden_layers: int = 61
    num_attention_heads: int = 128
    num_key_value_heads: int | None = 128
    n_shared_experts: int = 1
    n_routed_experts: int = 256
    routed_scaling_factor: float = 2.5
    kv_lora_rank: int = 512
    q_lora_rank: int | None = 1536
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    qk_nope_head_dim: int = 128
    n_group: int = 8
    topk_group: int = 4
    num_experts_per_tok: int = 8
    first_k_dense_replace: int = 3
    norm_topk_prob: bool = True
    rope_interleave: bool = True
    num_nextn_predict_layers: int = 1  # MTP modules of the published model (checkpoint layers after the last)
    # mft-only: MTP modules built for training (0 = none; inference never uses them) and their loss weight.
    mtp_layers: int = 0
    mtp_loss_coef: float = 0.3

    model_type = "deepseek_v3"
    architecture = "DeepseekV3ForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("mlp_bias", "head_dim")
    RUNTIME_FIELDS: ClassVar[tuple] = MoeDecoderConfig.RUNTIME_FIELDS + ("mtp_layers", "mtp_loss_coef")
    HF_DEFAULTS: ClassVar[dict] = {"max_position_embeddings": 4096, "bos_token_id": 0, "eos_token_id": 1}
    HF_CHECKED_KEYS: ClassVar[frozenset] = frozenset({
        "head_dim", "qk_head_dim", "topk_method", "scoring_func", "moe_layer_freq", "ep_size", "aux_loss_alpha", "seq_aux",
    })

    def __post_init__(self):
        self.head_dim = self.qk_rope_head_dim
        super().__post_init__()

    @classmethod
    def check_hf_keys(cls, d, bad):
        super().check_hf_keys(d, bad)
        rope, nope = d.get("qk_rope_head_dim", 64), d.get("qk_nope_head_dim", 128)
        if d.get("head_dim") is not None and d["head_dim"] != rope:
            bad("head_dim", d["head_dim"], f"DeepSeek-V3's head_dim is qk_rope_head_dim={rope}")
        if d.get("qk_head_dim") is not None and d["qk_head_dim"] != rope + nope:
            bad("qk_head_dim", d["qk_head_dim"], f"must be qk_nope_head_dim + qk_rope_head_dim = {rope + nope}")
        for key, want in (("topk_method", "noaux_tc"), ("scoring_func", "sigmoid"), ("moe_layer_freq", 1)):
            if key in d and d[key] != want:
                bad(key, d[key], f"only {want!r} is implemented")
        if "quantization_config" in d:
            bad("quantization_config", d["quantization_config"].get("quant_method") if isinstance(d["quantization_config"], dict) else d["quantization_config"], "quantized checkpoints are not supported; convert the weights to bf16/fp32 first")

    def validate_family(self, bad) -> None:
        super().validate_family(bad)
        for key in ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_group", "topk_group"):
            self._positive(bad, key, getattr(self, key))
        if self.q_lora_rank is not None:
            self._positive(bad, "q_lora_rank", self.q_lora_rank)
        if self.n_routed_experts % self.n_group:
            bad("n_group", self.n_group, f"must divide n_routed_experts={self.n_routed_experts}")
        if self.topk_group > self.n_group:
            bad("topk_group", self.topk_group, f"more than n_group={self.n_group}")
        if self.num_experts_per_tok > self.topk_group * (self.n_routed_experts // self.n_group):
            bad("num_experts_per_tok", self.num_experts_per_tok, "more than the experts in topk_group groups")
        if self.n_routed_experts // self.n_group < 2:
            bad("n_group", self.n_group, "each group needs at least 2 experts (a group scores by its best two)")
        if self.num_key_value_heads != self.num_attention_heads:
            bad("num_key_value_heads", self.num_key_value_heads, "MLA has one key/value per attention head")
        if self.mtp_layers < 0:
            bad("mtp_layers", self.mtp_layers, "must be >= 0")

    def rope_head_dim(self) -> int:
        return self.qk_rope_head_dim

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def softmax_scale(self) -> float:
        """qk_head_dim^-0.5, times mscale^2 under YaRN with mscale_all_dim (as DeepSeek/transformers)."""
        scale = self.qk_head_dim**-0.5
        if self.rope_type != "default":
            mscale_all_dim = self.rope_scaling.get("mscale_all_dim", 0)
            factor = self.rope_scaling.get("factor", 1.0)
            if mscale_all_dim and factor > 1:
                mscale = 0.1 * mscale_all_dim * math.log(factor) + 1.0
                scale = scale * mscale * mscale
        return scale

    def is_sparse(self, index: int) -> bool:
        """True when layer `index` is a mixture-of-experts layer (from first_k_dense_replace on)."""
        return index >= self.first_k_dense_replace

    def hf_extra(self) -> dict:
        return {"head_dim": self.qk_rope_head_dim, "qk_head_dim": self.qk_head_dim}
