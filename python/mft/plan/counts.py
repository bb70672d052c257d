"""Parameter totals (total, active per token, by component) and training FLOPs per token.

Counts are of trainable parameters (the router correction-bias buffer of
DeepSeek-V3 is listed with the weights' memory, not here). "model" excludes
DeepSeek-V3's training-only MTP modules; "total" is what the optimizer
trains (model + MTP), the number `mft train` prints.
"""

from __future__ import annotations

from mft.plan.shapes import COMPONENTS, ModelSizes, ParamTensor

FLOPS_FORMULA = (
    "train FLOPs/token = 3 x forward; forward = 2 x N_matmul_active + attention, "
    "attention = sum over layers of 2 x heads x seq_len x (qk_head_dim + v_head_dim) "
    "(QK^T and PV over the full seq_len x seq_len square, as the composed kernel computes it; "
    "a causal flash kernel does half), N_matmul_active = active parameters that multiply "
    "activations (everything but the embedding lookup and norm weights; the LM head counts; "
    "routed experts count top_k of num_experts; MTP modules add their layer, eh_proj and "
    "another LM-head product)"
)


def _active_share(s: ModelSizes, t: ParamTensor) -> float:
    """Fraction of a tensor one token uses: top_k / num_experts for a routed-expert stack, else all."""
    return s["num_experts_per_tok"] / s.num_experts if t.moe_routed else 1.0


def param_counts(s: ModelSizes, tensors: list[ParamTensor]) -> dict:
    trainable = [t for t in tensors if t.trainable]
    by_component = {c: 0 for c in COMPONENTS}
    for t in trainable:
        by_component[t.component] += t.numel
    model = [t for t in trainable if t.component != "mtp"]
    active = round(sum(t.numel * _active_share(s, t) for t in model))
    mtp_active = round(sum(t.numel * _active_share(s, t) for t in trainable if t.component == "mtp"))
    embedding = by_component["embedding"]
    return {
        "total": sum(t.numel for t in trainable),
        "model": sum(t.numel for t in model),
        "active": active,
        "mtp_active": mtp_active,
        "non_embedding": sum(t.numel for t in model) - embedding - by_component["head"],
        "buffers": sum(t.numel for t in tensors if not t.trainable),
        "by_component": {c: n for c, n in by_component.items() if n or c in ("embedding", "attention", "norms")},
    }


def _attention_dims(s: ModelSizes) -> tuple[int, int, int]:
    """(heads, qk width per head, v width per head)."""
    heads = s["num_attention_heads"]
    if s.arch == "deepseek_v3":
        return heads, s["qk_nope_head_dim"] + s["qk_rope_head_dim"], s["v_head_dim"]
    return heads, s.head_dim, s.head_dim


def flops_per_token(s: ModelSizes, tensors: list[ParamTensor], seq_len: int) -> dict:
    """Training and forward FLOPs per token (multiply-add = 2 FLOPs)."""
    matmul = [t for t in tensors if t.trainable and len(t.shape) >= 2 and t.component != "embedding"]
    n_model = sum(t.numel * _active_share(s, t) for t in matmul if t.component != "mtp")
    n_mtp = sum(t.numel * _active_share(s, t) for t in matmul if t.component == "mtp")
    heads, dqk, dv = _attention_dims(s)
    per_layer_attention = 2 * heads * seq_len * (dqk + dv)
    layers = s["num_hidden_layers"]
    head = s["vocab_size"] * s["hidden_size"]  # the tied or untied LM-head product
    tied = s.get("tie_word_embeddings", False)
    if tied:
        n_model += head  # the embedding matrix is used again as the head
    n_mtp += s.mtp_layers * head
    forward_model = 2 * n_model + layers * per_layer_attention
    forward_mtp = 2 * n_mtp + s.mtp_layers * per_layer_attention
    return {
        "train": round(3 * (forward_model + forward_mtp)),
        "forward": round(forward_model),
        "train_mtp": round(3 * forward_mtp),
        "matmul_params_active": round(n_model),
        "attention_forward": layers * per_layer_attention,
        "formula": FLOPS_FORMULA,
    }
