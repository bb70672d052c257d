"""Builds the model a recipe describes: from `model.pretrained` or from its sizes."""

from __future__ import annotations

import numpy as np

from mft.config import Config
from mft.errors import MftError


def hf_config_from_recipe(cfg: Config, tokenizer) -> dict:
    """The recipe's `model` section as a Hugging Face config.json dict."""
    m = cfg.model
    if m.arch not in ARCHITECTURES:  # vision-language families are built from a folder (tower, processor)
        raise MftError(f"model.arch={m.arch}: set model.pretrained to a {m.arch} model folder (built from sizes only for text families)")
    vocab = m.vocab_size or tokenizer.vocab_size
    if vocab < tokenizer.vocab_size:
        raise MftError(f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary ({tokenizer.vocab_size}) in {cfg.tokenizer.path}")
    if m.hidden_size % m.num_heads and m.head_dim is None:
        raise MftError(f"model.hidden_size={m.hidden_size} is not divisible by model.num_heads={m.num_heads}; set model.head_dim")
    kv = m.num_kv_heads or m.num_heads
    if m.num_heads % kv:
        raise MftError(f"model.num_heads={m.num_heads} must be a multiple of model.num_kv_heads={kv}")
    if cfg.data.seq_len > m.max_position_embeddings:
        raise MftError(f"data.seq_len={cfg.data.seq_len} exceeds model.max_position_embeddings={m.max_position_embeddings}")
    hf = {
        "architectures": [ARCHITECTURES[m.arch]],
        "model_type": m.arch,
        "vocab_size": vocab,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_heads,
        "num_key_value_heads": kv,
        "head_dim": m.head_dim or m.hidden_size // m.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": m.max_position_embeddings,
        "initializer_range": m.initializer_range,
        "rms_norm_eps": m.rms_norm_eps,
        "rope_theta": m.rope_theta,
        "attention_bias": m.attention_bias,
        "mlp_bias": m.mlp_bias,
        "tie_word_embeddings": m.tie_word_embeddings,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": None,
        "torch_dtype": "float32",
    }
    _family_keys(cfg, hf)
    return hf


ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
}
MOE_ARCHS = ("mixtral", "qwen3_moe", "deepseek_v3")


def _no(m, hf: dict, *keys: str) -> None:
    """Drop keys an arch's config.json does not have; a recipe asking for them is an error."""
    for key in keys:
        if getattr(m, key):
            raise MftError(f"model.{key}={getattr(m, key)!r} is not available for model.arch={m.arch}")
        hf.pop(key)


def _family_keys(cfg: Config, hf: dict) -> None:
    """Adds/removes the config.json keys that differ between families."""
    m = cfg.model
    if m.arch in MOE_ARCHS and not m.num_experts:
        raise MftError(f"model.num_experts is required for model.arch={m.arch}")
    moe_inter = m.moe_intermediate_size or m.intermediate_size
    if m.arch == "qwen2":
        _no(m, hf, "attention_bias", "mlp_bias")
    elif m.arch == "qwen3":
        _no(m, hf, "mlp_bias")
    elif m.arch == "mixtral":
        _no(m, hf, "attention_bias", "mlp_bias")
        hf.update(num_local_experts=m.num_experts, num_experts_per_tok=m.num_experts_per_tok, intermediate_size=moe_inter)
    elif m.arch == "qwen3_moe":
        _no(m, hf, "mlp_bias")
        hf.update(
            num_experts=m.num_experts, num_experts_per_tok=m.num_experts_per_tok, moe_intermediate_size=moe_inter,
            norm_topk_prob=m.norm_topk_prob, decoder_sparse_step=m.decoder_sparse_step, mlp_only_layers=list(m.mlp_only_layers),
        )
    elif m.arch == "deepseek_v3":
        _no(m, hf, "mlp_bias")
        hf.pop("head_dim")
        hf.update(
            n_routed_experts=m.num_experts, num_experts_per_tok=m.num_experts_per_tok, moe_intermediate_size=moe_inter,
            norm_topk_prob=m.norm_topk_prob, first_k_dense_replace=m.first_k_dense_replace, n_shared_experts=m.num_shared_experts,
            n_group=m.n_group, topk_group=m.topk_group, routed_scaling_factor=m.routed_scaling_factor,
            q_lora_rank=m.q_lora_rank, kv_lora_rank=m.kv_lora_rank, qk_nope_head_dim=m.qk_nope_head_dim,
            qk_rope_head_dim=m.qk_rope_head_dim, v_head_dim=m.v_head_dim, num_nextn_predict_layers=m.mtp_layers,
        )


def fused_kernels_available(device: str) -> bool:
    """True where mft's own fused ops run: the CPU target with mft._kernels built.
    (Imports no MindSpore: `mft plan` resolves the same defaults without it.)"""
    if device != "CPU":
        return False
    try:
        import mft._kernels  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_overrides(cfg: Config) -> dict:
    """mft-only model switches of the recipe (not part of config.json)."""
    m = cfg.model
    from mft.config.schema import NO_FUSED_ATTENTION

    # null = auto: mft's C++ kernels where they run (measured faster; docs/advanced/performance_tuning.md).
    auto = fused_kernels_available(cfg.run.device)
    out = {"fused_rmsnorm": auto if m.fused_rmsnorm is None else m.fused_rmsnorm}
    # The flash kernel is fp32-only: auto leaves it off for fp16/bf16 compute.
    auto_attention = auto and m.arch not in NO_FUSED_ATTENTION and cfg.train.precision == "fp32"
    fused_attention = auto_attention if m.fused_attention is None else m.fused_attention
    if fused_attention:  # only when set: families without the switch still build
        out["fused_attention"] = True
    auto_rope = auto and cfg.train.precision == "fp32"  # the RoPE kernel is float32 too
    if (auto_rope if m.fused_rope is None else m.fused_rope):
        out["fused_rope"] = True
    if (auto_rope if m.fused_swiglu is None else m.fused_swiglu):  # float32 as the RoPE kernel
        out["fused_swiglu"] = True
    if (auto if m.fused_cross_entropy is None else m.fused_cross_entropy):
        out["fused_cross_entropy"] = True
    if m.arch in MOE_ARCHS:
        out.update(
            moe_capacity_factor=m.capacity_factor, moe_aux_loss_type=m.aux_loss_type, moe_aux_loss_coef=m.aux_loss_coef,
            moe_z_loss_coef=m.router_z_loss_coef, moe_bias_update_rate=m.expert_bias_update_rate,
        )
        # Sorted dispatch is dropless and fp32-only: auto leaves it off with a capacity or low precision.
        auto_moe = auto and m.capacity_factor <= 0 and cfg.train.precision == "fp32"
        out["fused_moe"] = auto_moe if m.fused_moe is None else m.fused_moe
    if m.arch == "deepseek_v3":
        out.update(mtp_layers=m.mtp_layers, mtp_loss_coef=m.mtp_loss_coef)
    return out


def build_model(cfg: Config, tokenizer):
    """Returns (model, its HF config dict)."""
    from mft.models import AutoModelForCausalLM

    if cfg.model.pretrained:
        model = AutoModelForCausalLM.from_pretrained(cfg.model.pretrained, **runtime_overrides(cfg))
        if model.config.model_type != cfg.model.arch:
            raise MftError(f"model.pretrained {cfg.model.pretrained} is a {model.config.model_type} model but model.arch is {cfg.model.arch}")
        if model.config.vocab_size < tokenizer.vocab_size:
            raise MftError(
                f"model.pretrained {cfg.model.pretrained} has vocab_size {model.config.vocab_size}, "
                f"smaller than the tokenizer {cfg.tokenizer.path} ({tokenizer.vocab_size})"
            )
        return model, model.config.to_hf_dict()
    hf = hf_config_from_recipe(cfg, tokenizer)
    model = AutoModelForCausalLM.from_config(hf, **runtime_overrides(cfg))
    init_weights(model, cfg.run.seed, cfg.model.initializer_range)
    return model, hf


def load_weights_from_folder(model, folder: str) -> None:
    """Loads a checkpoint folder's weights into an already-built model (resume)."""
    from mft.models import checkpoint_io

    tensors, source = checkpoint_io.read_weights(folder)
    model.load_hf_state_dict(tensors, source)


def init_weights(model, seed: int, std: float) -> None:
    """Fresh weights from numpy's RNG, seeded by the run, visited in name order.

    MindSpore's initializers draw from a process-global stream, so a second
    model built in the same process starts elsewhere; this keeps a run's
    initial weights a function of its seed alone. Matrices ~ N(0, std), with
    the residual-output projections (o_proj, down_proj) scaled by
    1/sqrt(2 * layers) as in GPT-2/Megatron; norms 1; biases 0.
    """
    import mindspore as ms

    from mft.parallel.tensor_parallel import model_shards, shard_array, tp_group_of

    rng = np.random.default_rng(seed)
    layers = model.config.num_hidden_layers
    shards = model_shards(model)  # tensor parallel: draw the full tensor, keep this rank's piece
    rank = tp_group_of(model).rank
    from mft.parallel.expert_parallel import init_shards

    expert_shards = init_shards(model)  # expert parallel: draw every expert, keep this rank's
    for name, param in sorted(model.parameters_and_names(), key=lambda kv: kv[0]):
        shard = shards.get(id(param))
        shape = list(param.shape)
        if shard is not None:
            shape[shard.axis] = shard.full
        shape = tuple(shape)
        if id(param) in expert_shards:
            shape = expert_shards[id(param)][0]
        if name.endswith((".bias", "e_score_correction_bias")):
            value = np.zeros(shape, np.float32)
        elif len(shape) == 1:
            value = np.ones(shape, np.float32)
        else:
            scale = std / np.sqrt(2.0 * layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else std
            value = rng.normal(0.0, scale, shape).astype(np.float32)
        if shard is not None:
            value = shard_array(value, shard, rank)
        if id(param) in expert_shards:
            value = np.ascontiguousarray(value[expert_shards[id(param)][1]])
        param.set_data(ms.Tensor(value, dtype=param.dtype))
