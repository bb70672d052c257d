"""`model.*` keys that only some `model.arch` values read, checked when a config loads.

A recipe that sets such a key (to a non-default value) for an arch that
never reads it would be silently ignored; instead it is a config error
naming the archs that use it, in the style of `hyperparams.py` (which does
the same for optimizer and lr-schedule sub-keys). `model_key_problems`
yields (dotted key, problem); the loader raises the first as a ConfigError
naming the file that set the key.
"""

from __future__ import annotations

from collections.abc import Iterator

from mft.config.schema import Config, ModelConfig

MOE = ("mixtral", "qwen3_moe", "deepseek_v3")

# model key -> the archs whose model reads it (keys not listed apply to every arch).
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    **{k: MOE for k in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "capacity_factor",
                        "aux_loss_type", "aux_loss_coef", "router_z_loss_coef", "fused_moe")},
    "norm_topk_prob": ("qwen3_moe", "deepseek_v3"),  # mixtral always renormalises
    "decoder_sparse_step": ("qwen3_moe",),
    "mlp_only_layers": ("qwen3_moe",),
    # deepseek_v3: routing with a correction bias, shared experts, MLA, multi-token prediction
    **{k: ("deepseek_v3",) for k in ("first_k_dense_replace", "num_shared_experts", "n_group", "topk_group",
                                     "routed_scaling_factor", "expert_bias_update_rate", "q_lora_rank", "kv_lora_rank",
                                     "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "mtp_layers", "mtp_loss_coef")},
}


def model_key_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    m = cfg.model
    defaults = ModelConfig()
    for key, archs in ARCH_KEYS.items():
        if m.arch not in archs and getattr(m, key) != getattr(defaults, key):
            users = " | ".join(archs)
            yield f"model.{key}", f"is read only by model.arch={users} (arch is {m.arch}); remove it"
