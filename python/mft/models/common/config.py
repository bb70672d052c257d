"""DecoderConfig: the hyper-parameters every decoder-only family shares, read from HF config.json.

A family config subclasses it, adds its own dataclass fields and sets
`model_type`/`architecture`. Reading accepts both config styles found in
real checkpoints: transformers 4 (`rope_theta`, `rope_scaling`,
`torch_dtype`) and transformers 5 (`rope_parameters`, `dtype`). A key we do
not know, or a value we do not implement, is an error naming the field
rather than a silently different model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mft.errors import MftError
from mft.models.common.config_rope import read_rope
from mft.models.common.rope import ROPE_REQUIRED

SUPPORTED_DTYPES = ("float32", "float16", "bfloat16")

# Keys of any transformers config that do not change the model's math.
HF_HARMLESS_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "use_cache", "_name_or_path", "auto_map",
    "id2label", "label2id", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
    "chunk_size_feed_forward", "is_encoder_decoder", "tokenizer_class", "task_specific_params", "problem_type",
    "output_router_logits", "num_labels", "finetuning_task", "prefix", "sep_token_id", "decoder_start_token_id",
    "is_decoder", "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size", "pruned_heads",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "temperature", "top_k", "top_p",
    "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "use_bfloat16", "tf_legacy_loss", "typical_p", "diversity_penalty", "num_beam_groups", "remove_invalid_values",
    "forced_bos_token_id", "forced_eos_token_id", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "encoder_no_repeat_ngram_size", "output_scores", "return_dict_in_generate",
    "max_window_layers",  # only read when use_sliding_window is true, which is rejected
    "_attn_implementation_autoset",  # written by transformers 4.48-4.50: which attention kernel, not the math
})
# Keys read by the shared parser below (not dataclass fields of the same name).
HF_PARSED_KEYS = frozenset({
    "rope_parameters", "rope_scaling", "rope_theta", "dtype", "torch_dtype", "pretraining_tp",
    "attention_dropout", "partial_rotary_factor",
})


@dataclass
class DecoderConfig:
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
    # mft-only runtime switches (not written to config.json): fused RMSNorm / flash-attention kernels.
    fused_rmsnorm: bool = False
    fused_attention: bool = False
    fused_rope: bool = False  # the C++ rotate_half RoPE kernel in the attention layers (float32)
    fused_cross_entropy: bool = False  # the C++ cross-entropy kernel for the training loss
    fused_swiglu: bool = False  # the C++ SwiGLU activation kernel in the dense MLPs (float32)

    model_type = "decoder"
    architecture = "DecoderForCausalLM"
    # Fields that are mft runtime switches, never read from / written to config.json.
    RUNTIME_FIELDS: ClassVar[tuple] = ("fused_rmsnorm", "fused_attention", "fused_rope", "fused_cross_entropy", "fused_swiglu")
    # field -> other HF spellings of it, first found wins (e.g. num_experts / num_local_experts).
    HF_ALIASES: ClassVar[dict] = {}
    # Fields a family's config.json does not carry (they keep their defaults and are not written).
    NOT_IN_HF: ClassVar[tuple] = ()
    # rope_type values this family implements (ROPE_INIT has them all).
    ROPE_TYPES: ClassVar[tuple] = ("default", "linear", "llama3", "yarn")
    # transformers' values for keys a config.json may leave out, where they differ from the
    # dataclass defaults above (which recipes use); `rope_theta` is the default theta.
    HF_DEFAULTS: ClassVar[dict] = {}

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.validate()

    # ---- checks ---------------------------------------------------------
    @staticmethod
    def _bad(source: str):
        def bad(key: str, value: Any, why: str):
            raise MftError(f"{source}: {key}={value!r} is not supported: {why}")

        return bad

    @staticmethod
    def _positive(bad, name: str, value) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            bad(name, value, "expected a positive integer")

    def validate(self, source: str = "config") -> None:
        """Checks the values (sizes, divisibility, activation, rope); MftError naming `source` and the key otherwise."""
        bad = self._bad(source)
        if self.hidden_act != "silu":
            bad("hidden_act", self.hidden_act, "only 'silu' (SwiGLU) is implemented")
        if self.rope_type not in self.ROPE_TYPES:
            bad("rope_type", self.rope_type, f"implemented rope types: {', '.join(sorted(self.ROPE_TYPES))}")
        for key in ROPE_REQUIRED[self.rope_type]:
            if not isinstance(self.rope_scaling.get(key), (int, float)) or isinstance(self.rope_scaling.get(key), bool):
                bad(f"rope_parameters.{key}", self.rope_scaling.get(key), f"rope_type {self.rope_type!r} needs a number here")
        if self.dtype not in SUPPORTED_DTYPES:
            bad("dtype", self.dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "head_dim"):
            self._positive(bad, key, getattr(self, key))
        if self.num_attention_heads % self.num_key_value_heads != 0:
            bad("num_key_value_heads", self.num_key_value_heads, f"must divide num_attention_heads={self.num_attention_heads}")
        if self.rope_head_dim() % 2 != 0:
            bad("head_dim", self.rope_head_dim(), "rotary embeddings need an even head_dim")
        self.validate_family(bad)

    def validate_family(self, bad) -> None:
        """Family-specific value checks (override)."""

    def rope_head_dim(self) -> int:
        """Width of the rotated part of each head (MLA rotates only part of it)."""
        return self.head_dim

    @classmethod
    def check_hf_keys(cls, d: dict, bad) -> None:
        """Family checks on raw config.json values that are not fields (override; call super)."""
        tp = d.get("pretraining_tp", 1)
        if tp is not None and (not isinstance(tp, int) or isinstance(tp, bool) or tp < 1):
            bad("pretraining_tp", tp, "expected a positive integer (it only sliced the matmuls of the original "
                "pretraining code; the weights are whole and transformers 5 ignores it)")
        if float(d.get("attention_dropout", 0.0) or 0.0) != 0.0:
            bad("attention_dropout", d["attention_dropout"], "attention dropout is not implemented")
        if "partial_rotary_factor" in d and float(d["partial_rotary_factor"]) != 1.0:
            bad("partial_rotary_factor", d["partial_rotary_factor"], "only full rotary embeddings are implemented")

    # Raw keys a family accepts after checking them in check_hf_keys (override).
    HF_CHECKED_KEYS: ClassVar[frozenset] = frozenset()

    # ---- config.json ----------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json"):
        """The config of a Hugging Face config.json dict, checked; unsupported keys and values are MftErrors naming `source`."""
        bad = cls._bad(source)
        cls.check_hf_keys(d, bad)

        max_positions = d.get("max_position_embeddings", cls.HF_DEFAULTS.get("max_position_embeddings", cls.max_position_embeddings))
        theta, rope_type, scaling = read_rope(d, cls.ROPE_TYPES, cls.HF_DEFAULTS.get("rope_theta", 10000.0), max_positions, bad)

        dtype = d.get("dtype", d.get("torch_dtype")) or "float32"
        if dtype not in SUPPORTED_DTYPES:
            bad("dtype" if "dtype" in d else "torch_dtype", dtype, f"expected one of {', '.join(SUPPORTED_DTYPES)}")

        kwargs = {}
        known = set(HF_HARMLESS_KEYS | HF_PARSED_KEYS | cls.HF_CHECKED_KEYS)
        for f in dataclasses.fields(cls):
            if f.name in ("rope_theta", "rope_type", "rope_scaling", "dtype") or f.name in cls.RUNTIME_FIELDS or f.name in cls.NOT_IN_HF:
                continue
            names = (f.name, *cls.HF_ALIASES.get(f.name, ()))
            known.update(names)
            for name in names:
                if name in d and d[name] is not None:
                    kwargs[f.name] = d[name]
                    break
                if name in d and "None" in str(f.type):  # an explicit null where None means something (q_lora_rank, head_dim, ...)
                    kwargs[f.name] = None
                    break
            else:
                if f.name in cls.HF_DEFAULTS and not any(name in d for name in names):
                    kwargs[f.name] = cls.HF_DEFAULTS[f.name]
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            bad(unknown[0], d[unknown[0]], f"unknown to mft's {cls.model_type} model (unknown keys: {', '.join(unknown)})")
        try:
            return cls(rope_theta=float(theta), rope_type=rope_type, rope_scaling=scaling, dtype=dtype, **kwargs)
        except MftError as e:
            raise MftError(str(e).replace("config:", f"{source}:", 1)) from None
        except TypeError as e:
            raise MftError(f"{source}: {e}") from None

    def hf_extra(self) -> dict:
        """Family keys written to config.json besides the fields (override)."""
        return {}

    def to_hf_dict(self) -> dict:
        """config.json contents transformers reads (both the v5 and the older rope keys)."""
        rope_parameters = {"rope_type": self.rope_type, "rope_theta": self.rope_theta, **self.rope_scaling}
        out = {"architectures": [self.architecture], "model_type": self.model_type}
        for f in dataclasses.fields(self):
            if f.name in ("rope_theta", "rope_type", "rope_scaling", "dtype") or f.name in self.RUNTIME_FIELDS or f.name in self.NOT_IN_HF:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out.update({
            "rope_parameters": rope_parameters,
            "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_type == "default" else {"rope_type": self.rope_type, **self.rope_scaling},
            "attention_dropout": 0.0,
            "pretraining_tp": 1,
            "dtype": self.dtype,
            "use_cache": True,
        })
        out.update(self.hf_extra())
        return out


class FullAttentionOnly:
    """Mixin for Qwen-style configs, which carry sliding-window keys: sliding-window
    attention is not implemented, so those keys must leave every layer on full
    attention the way transformers reads them: `use_sliding_window` false, or true
    with a null window or (Qwen2/Qwen3) `max_window_layers` >= the layer count;
    every `layer_types` entry full_attention."""

    HF_CHECKED_KEYS: ClassVar[frozenset] = frozenset({"use_sliding_window", "sliding_window", "layer_types"})
    # transformers' rule: Qwen2/Qwen3 window the layers from max_window_layers on, Qwen3-MoE every layer.
    WINDOW_FROM_MAX_WINDOW_LAYERS: ClassVar[bool] = True

    @classmethod
    def check_hf_keys(cls, d: dict, bad) -> None:
        """The base checks, then: no layer may attend through a sliding window."""
        super().check_hf_keys(d, bad)
        for i, kind in enumerate(d.get("layer_types") or []):
            if kind != "full_attention":
                bad(f"layer_types[{i}]", kind, "only 'full_attention' layers are implemented")
        window = d.get("sliding_window", 4096)  # transformers' default when the key is absent
        if d.get("use_sliding_window") and window is not None and not d.get("layer_types"):
            layers = d.get("num_hidden_layers", cls.num_hidden_layers)
            first = d.get("max_window_layers", 28) if cls.WINDOW_FROM_MAX_WINDOW_LAYERS else 0
            if first < layers:
                bad("use_sliding_window", d["use_sliding_window"], f"layers {first} to {layers - 1} would attend through a "
                    f"{window}-token sliding window, which mft does not implement")

    def hf_extra(self) -> dict:
        """The base keys plus use_sliding_window: false."""
        return {**super().hf_extra(), "use_sliding_window": False}


@dataclass
class MoeDecoderConfig(DecoderConfig):
    """A decoder with sparse MoE layers: the mft-only training switches they share.

    None of these is in config.json; recipes set them (model.* keys) and a
    loaded checkpoint starts with the inference defaults (dropless, no aux).
    """

    moe_capacity_factor: float = 0.0  # <= 0: dropless; else tokens per expert = ceil(cf * T * k / E)
    moe_aux_loss_type: str = "global"  # global | sequence | none
    moe_aux_loss_coef: float = 0.0
    moe_z_loss_coef: float = 0.0
    moe_bias_update_rate: float = 0.0  # auxiliary-loss-free balancing step (routers with a correction bias)
    # Sorted (dropless) dispatch through the C++ permute + grouped-matmul kernels: each expert runs
    # only on the tokens routed to it. Off: the static-capacity dispatch (every expert on C tokens).
    fused_moe: bool = False

    RUNTIME_FIELDS: ClassVar[tuple] = DecoderConfig.RUNTIME_FIELDS + (
        "moe_capacity_factor", "moe_aux_loss_type", "moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate",
        "fused_moe",
    )

    def validate_family(self, bad) -> None:
        from mft.models.common.moe import AUX_LOSS_TYPES

        if self.moe_aux_loss_type not in AUX_LOSS_TYPES:
            bad("moe_aux_loss_type", self.moe_aux_loss_type, f"expected one of {', '.join(AUX_LOSS_TYPES)}")
        for key in ("moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate"):
            if getattr(self, key) < 0:
                bad(key, getattr(self, key), "must be >= 0")
        if self.fused_moe and self.moe_capacity_factor > 0:
            bad("fused_moe", self.fused_moe, "the sorted dispatch is dropless; it needs capacity_factor <= 0")
