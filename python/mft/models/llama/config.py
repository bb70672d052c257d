"""LlamaConfig: the model's hyper-parameters, read from / written to HF config.json.

Reads both config styles found in real checkpoints: transformers 4
(`rope_theta`, `rope_scaling`, `torch_dtype`) and transformers 5
(`rope_parameters`, `dtype`). A value we do not implement is an error naming
the field rather than a silently different model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mft.errors import MftError
from mft.models.common.rope import ROPE_INIT, ROPE_REQUIRED

SUPPORTED_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None -> num_attention_heads (MHA)
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_scaling: dict = field(default_factory=dict)  # extra rope parameters of rope_type (factor, ...)
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    pad_token_id: int | None = None
    dtype: str = "float32"
    # mft-only runtime switch (not written to config.json): use the fused RMSNorm kernel.
    fused_rmsnorm: bool = False

    model_type = "llama"
    architecture = "LlamaForCausalLM"

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.validate()

    def validate(self, source: str = "config") -> None:
        def bad(key: str, value: Any, why: str):
            raise MftError(f"{source}: {key}={value!r} is not supported: {why}")

        if self.hidden_act != "silu":
            bad("hidden_act", self.hidden_act, "only 'silu' (SwiGLU) is implemented")
        if self.rope_type not in ROPE_INIT:
            bad("rope_type", self.rope_type, f"implemented rope types: {', '.join(sorted(ROPE_INIT))}")
        for key in ROPE_REQUIRED[self.rope_type]:
            if not isinstance(self.rope_scaling.get(key), (int, float)) or isinstance(self.rope_scaling.get(key), bool):
                bad(f"rope_parameters.{key}", self.rope_scaling.get(key), f"rope_type {self.rope_type!r} needs a number here")
        if self.dtype not in SUPPORTED_DTYPES:
            bad("dtype", self.dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "head_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                bad(key, value, "expected a positive integer")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            bad("num_key_value_heads", self.num_key_value_heads, f"must divide num_attention_heads={self.num_attention_heads}")
        if self.head_dim % 2 != 0:
            bad("head_dim", self.head_dim, "rotary embeddings need an even head_dim")

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> "LlamaConfig":
        def bad(key: str, value: Any, why: str):
            raise MftError(f"{source}: {key}={value!r} is not supported: {why}")

        if d.get("pretraining_tp", 1) != 1:
            bad("pretraining_tp", d["pretraining_tp"], "only 1 (weights are not split for pretraining TP)")
        if float(d.get("attention_dropout", 0.0) or 0.0) != 0.0:
            bad("attention_dropout", d["attention_dropout"], "attention dropout is not implemented")
        if "partial_rotary_factor" in d and float(d["partial_rotary_factor"]) != 1.0:
            bad("partial_rotary_factor", d["partial_rotary_factor"], "only full rotary embeddings are implemented")

        rope = d.get("rope_parameters")
        if rope is not None:
            if not isinstance(rope, dict):
                bad("rope_parameters", rope, "expected an object")
            rope_key = "rope_parameters"
            theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        else:
            rope = d.get("rope_scaling") or {}
            if not isinstance(rope, dict):
                bad("rope_scaling", rope, "expected an object or null")
            rope_key = "rope_scaling"
            theta = d.get("rope_theta", 10000.0)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_INIT:
            bad(f"{rope_key}.rope_type", rope_type, f"implemented rope types: {', '.join(sorted(ROPE_INIT))}")
        scaling = {k: v for k, v in rope.items() if k not in ("rope_type", "type", "rope_theta")}

        dtype = d.get("dtype", d.get("torch_dtype")) or "float32"
        if dtype not in SUPPORTED_DTYPES:
            bad("dtype" if "dtype" in d else "torch_dtype", dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")

        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in ("rope_theta", "rope_type", "rope_scaling", "dtype", "fused_rmsnorm"):
                continue
            if f.name in d and d[f.name] is not None:
                kwargs[f.name] = d[f.name]
            elif f.name in ("pad_token_id", "bos_token_id", "eos_token_id") and f.name in d:
                kwargs[f.name] = None
        try:
            return cls(rope_theta=float(theta), rope_type=rope_type, rope_scaling=scaling, dtype=dtype, **kwargs)
        except MftError as e:
            raise MftError(str(e).replace("config:", f"{source}:", 1)) from None

    def to_hf_dict(self) -> dict:
        """config.json contents transformers reads (both the v5 and the older rope keys)."""
        rope_parameters = {"rope_type": self.rope_type, "rope_theta": self.rope_theta, **self.rope_scaling}
        out = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings,
            "initializer_range": self.initializer_range,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope_parameters,
            "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_type == "default" else {"rope_type": self.rope_type, **self.rope_scaling},
            "attention_bias": self.attention_bias,
            "attention_dropout": 0.0,
            "mlp_bias": self.mlp_bias,
            "pretraining_tp": 1,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "dtype": self.dtype,
            "use_cache": True,
        }
        return out
