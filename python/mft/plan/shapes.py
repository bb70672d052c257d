"""The parameter tensors a recipe's model will have, from arithmetic alone.

`model_sizes(cfg)` turns the recipe's `model` section into the family's
config.json dict exactly as the trainer does
(`mft.training.model_factory.hf_config_from_recipe`), or reads
`model.pretrained`'s config.json. `inventory(sizes)` lists every parameter the
family's Cells create — same names and shapes as `model.parameters_and_names()`
— with the component it belongs to and how a parallel layout splits it. No
MindSpore import, no weights: the family config classes import MindSpore
(their package pulls in the model code), so this reads the same dict they
are built from instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from math import prod

from mft.errors import MftError

# How tensor parallelism splits a tensor (Megatron-style):
#   column: the output axis (rows of the (out, in) weight) / tp; its bias too
#   row: the input axis / tp; the bias is replicated
#   vocab: the vocabulary axis, padded up to a multiple of tp
#   replicated: every tp rank holds all of it (norms, routers, MLA down-projections)
#   expert: the leading expert axis / ep (no tensor parallelism inside experts)
COLUMN, ROW, VOCAB, REPLICATED, EXPERT = "column", "row", "vocab", "replicated", "expert"
COMPONENTS = ("embedding", "attention", "mlp", "router", "experts", "shared_experts", "norms", "head", "mtp", "lora")


@dataclass(frozen=True)
class ParamTensor:
    name: str
    shape: tuple
    component: str  # one of COMPONENTS
    split: str  # one of the split kinds above
    layer: int | None  # decoder layer index; None for embedding/final norm/head; L + k for MTP module k
    trainable: bool = True
    moe_routed: bool = False  # a routed-expert stack: only top_k / num_experts of it is active per token
    frozen: bool = False  # a base weight finetune.method=lora keeps fixed (plan/lora.py): no gradient or optimizer state

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class ModelSizes:
    """What the parameter count, FLOPs and activations depend on (HF config.json names)."""

    hf: dict  # the family config.json dict
    mtp_layers: int  # deepseek_v3 training-only MTP modules (0 elsewhere)

    def __getitem__(self, key):
        return self.hf[key]

    def get(self, key, default=None):
        value = self.hf.get(key, default)
        return default if value is None else value

    @property
    def arch(self) -> str:
        return self.hf["model_type"]

    @property
    def head_dim(self) -> int:
        return self.get("head_dim") or self["hidden_size"] // self["num_attention_heads"]

    @property
    def kv_heads(self) -> int:
        return self.get("num_key_value_heads") or self["num_attention_heads"]

    @property
    def num_experts(self) -> int:
        return self.get("num_local_experts") or self.get("num_experts") or self.get("n_routed_experts") or 0

    @property
    def moe_inter(self) -> int:
        return self.get("moe_intermediate_size") or self["intermediate_size"]

    def is_sparse(self, index: int) -> bool:
        """Whether decoder layer `index` has a MoE feed-forward (the family configs' rule)."""
        if self.arch == "mixtral":
            return True
        if self.arch == "qwen3_moe":
            step = self.get("decoder_sparse_step", 1)
            return index not in (self.get("mlp_only_layers") or []) and (index + 1) % step == 0
        if self.arch == "deepseek_v3":
            return index >= self.get("first_k_dense_replace", 0)
        return False


class _VocabOnly:
    """What hf_config_from_recipe reads of a tokenizer, when only its size is known."""

    def __init__(self, vocab_size: int, bos_id=None, eos_id=None):
        self.vocab_size, self.bos_id, self.eos_id = vocab_size, bos_id, eos_id


def model_sizes(cfg) -> ModelSizes:
    """The family config dict the trainer would build from `cfg` (no MindSpore, no weights)."""
    from mft.training.model_factory import hf_config_from_recipe, runtime_overrides

    m = cfg.model
    mtp = runtime_overrides(cfg).get("mtp_layers", 0)
    if m.pretrained:
        path = os.path.join(m.pretrained, "config.json")
        try:
            with open(path, encoding="utf-8") as f:
                hf = json.load(f)
        except OSError as e:
            raise MftError(f"model.pretrained: cannot read {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise MftError(f"model.pretrained: {path} is not valid JSON: {e}") from None
        if hf.get("model_type") != m.arch:
            raise MftError(f"model.pretrained {m.pretrained} is a {hf.get('model_type')} model but model.arch is {m.arch}")
        return ModelSizes(hf, mtp)
    if m.vocab_size:
        tokenizer = _VocabOnly(m.vocab_size)
    else:
        from mft.tokenizer import Tokenizer

        if not os.path.isfile(cfg.tokenizer.path):
            raise MftError(f"model.vocab_size is not set and tokenizer.path {cfg.tokenizer.path} does not exist: set one of them")
        tok = Tokenizer.from_file(cfg.tokenizer.path)
        tokenizer = _VocabOnly(tok.vocab_size, tok.bos_id, tok.eos_id)
    return ModelSizes(hf_config_from_recipe(cfg, tokenizer), mtp)


def _linear(out: list, prefix: str, n_out: int, n_in: int, bias: bool, component: str, split: str, layer) -> None:
    out.append(ParamTensor(f"{prefix}.weight", (n_out, n_in), component, split, layer))
    if bias:
        out.append(ParamTensor(f"{prefix}.bias", (n_out,), component, split if split == COLUMN else REPLICATED, layer))


def _norm(out: list, prefix: str, width: int, layer, component: str = "norms") -> None:
    out.append(ParamTensor(f"{prefix}.weight", (width,), component, REPLICATED, layer))


def _attention(s: ModelSizes, p: str, layer: int) -> list:
    out: list = []
    h, heads = s["hidden_size"], s["num_attention_heads"]
    if s.arch == "deepseek_v3":  # multi-head latent attention (models/common/mla.py)
        bias = bool(s.get("attention_bias"))
        qk = s["qk_nope_head_dim"] + s["qk_rope_head_dim"]
        q_rank, kv_rank = s.get("q_lora_rank"), s["kv_lora_rank"]
        if q_rank:
            _linear(out, f"{p}.q_a_proj", q_rank, h, bias, "attention", REPLICATED, layer)
            _norm(out, f"{p}.q_a_layernorm", q_rank, layer)
            _linear(out, f"{p}.q_b_proj", heads * qk, q_rank, False, "attention", COLUMN, layer)
        else:
            _linear(out, f"{p}.q_proj", heads * qk, h, False, "attention", COLUMN, layer)
        _linear(out, f"{p}.kv_a_proj_with_mqa", kv_rank + s["qk_rope_head_dim"], h, bias, "attention", REPLICATED, layer)
        _norm(out, f"{p}.kv_a_layernorm", kv_rank, layer)
        _linear(out, f"{p}.kv_b_proj", heads * (s["qk_nope_head_dim"] + s["v_head_dim"]), kv_rank, False, "attention", COLUMN, layer)
        _linear(out, f"{p}.o_proj", h, heads * s["v_head_dim"], bias, "attention", ROW, layer)
        return out
    d, kv = s.head_dim, s.kv_heads
    qkv_bias = True if s.arch == "qwen2" else bool(s.get("attention_bias"))
    o_bias = False if s.arch == "qwen2" else bool(s.get("attention_bias"))
    _linear(out, f"{p}.q_proj", heads * d, h, qkv_bias, "attention", COLUMN, layer)
    _linear(out, f"{p}.k_proj", kv * d, h, qkv_bias, "attention", COLUMN, layer)
    _linear(out, f"{p}.v_proj", kv * d, h, qkv_bias, "attention", COLUMN, layer)
    _linear(out, f"{p}.o_proj", h, heads * d, o_bias, "attention", ROW, layer)
    if s.arch in ("qwen3", "qwen3_moe"):
        _norm(out, f"{p}.q_norm", d, layer)
        _norm(out, f"{p}.k_norm", d, layer)
    return out


def _swiglu(out: list, p: str, h: int, inter: int, bias: bool, component: str, layer) -> None:
    _linear(out, f"{p}.gate_proj", inter, h, bias, component, COLUMN, layer)
    _linear(out, f"{p}.up_proj", inter, h, bias, component, COLUMN, layer)
    _linear(out, f"{p}.down_proj", h, inter, bias, component, ROW, layer)


def _feed_forward(s: ModelSizes, p: str, layer: int) -> list:
    out: list = []
    h = s["hidden_size"]
    if not s.is_sparse(layer):
        bias = bool(s.get("mlp_bias")) if s.arch == "llama" else False
        _swiglu(out, p, h, s["intermediate_size"], bias, "mlp", layer)
        return out
    e, inter = s.num_experts, s.moe_inter
    out.append(ParamTensor(f"{p}.gate.weight", (e, h), "router", REPLICATED, layer))
    if s.arch == "deepseek_v3":  # correction bias: a buffer updated from the load, not by gradients
        out.append(ParamTensor(f"{p}.gate.e_score_correction_bias", (e,), "router", REPLICATED, layer, trainable=False))
    for name, shape in (("gate_proj", (e, inter, h)), ("up_proj", (e, inter, h)), ("down_proj", (e, h, inter))):
        out.append(ParamTensor(f"{p}.experts.{name}.weight", shape, "experts", EXPERT, layer, moe_routed=True))
    shared = s.get("n_shared_experts", 0) if s.arch == "deepseek_v3" else 0
    if shared:
        _swiglu(out, f"{p}.shared_experts", h, inter * shared, False, "shared_experts", layer)
    return out


def _decoder_layer(s: ModelSizes, p: str, layer: int) -> list:
    h = s["hidden_size"]
    out: list = []
    _norm(out, f"{p}.input_layernorm", h, layer)
    out += _attention(s, f"{p}.self_attn", layer)
    _norm(out, f"{p}.post_attention_layernorm", h, layer)
    out += _feed_forward(s, f"{p}.mlp", layer)
    return out


def inventory(s: ModelSizes) -> list[ParamTensor]:
    """Every parameter (and buffer) of the model, in the order the Cells create them."""
    h, vocab, layers = s["hidden_size"], s["vocab_size"], s["num_hidden_layers"]
    out = [ParamTensor("model.embed_tokens.weight", (vocab, h), "embedding", VOCAB, None)]
    for i in range(layers):
        out += _decoder_layer(s, f"model.layers.{i}", i)
    _norm(out, "model.norm", h, None)
    if not s.get("tie_word_embeddings", False):
        out.append(ParamTensor("lm_head.weight", (vocab, h), "head", VOCAB, None))
    for k in range(s.mtp_layers):  # models/common/mtp.py: shares the embedding and the LM head
        index = layers + k
        mtp: list = []
        _norm(mtp, f"mtp.{k}.enorm", h, index)
        _norm(mtp, f"mtp.{k}.hnorm", h, index)
        _linear(mtp, f"mtp.{k}.eh_proj", h, 2 * h, False, "mtp", COLUMN, index)
        mtp += _decoder_layer(s, f"mtp.{k}.layer", index)
        _norm(mtp, f"mtp.{k}.head_norm", h, index)
        out += [ParamTensor(t.name, t.shape, "mtp", t.split, t.layer, t.trainable, t.moe_routed) for t in mtp]
    return out
