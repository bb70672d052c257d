"""The rotary-embedding keys of a config.json, read the way transformers 5 reads them.

Two spellings are found in real checkpoints: transformers 5's
`rope_parameters` (with `rope_theta` inside) and transformers 4's top-level
`rope_theta` plus `rope_scaling` (its kind under `type` or `rope_type`).
As in transformers, a non-null `rope_scaling` wins over `rope_parameters`,
a theta inside the dict wins over the top-level one, `rope_type` wins over
`type`, and llama3 / yarn default `original_max_position_embeddings` to
`max_position_embeddings`. A kind mft does not implement, a partial rotary
factor or per-layer-type rope dicts are refused by name.
"""

from __future__ import annotations

# Why a rope kind transformers knows is refused (the message names the key and the implemented kinds too).
UNSUPPORTED_ROPE = {
    "dynamic": "dynamic NTK scaling recomputes the frequencies from the running sequence length "
               "(and transformers keeps them between calls), which mft does not implement",
    "longrope": "LongRoPE (per-dimension short/long factors, Phi-3 style) is not implemented",
    "su": "su / LongRoPE scaling (Phi-3 style) is not implemented",
    "proportional": "proportional rope is not implemented",
}
# Kinds whose pretraining context length transformers fills in from max_position_embeddings.
NEEDS_ORIGINAL_CONTEXT = ("llama3", "yarn", "longrope")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_rope(d: dict, rope_types: tuple, default_theta: float, max_position_embeddings, bad) -> tuple[float, str, dict]:
    """(rope_theta, rope_type, the kind's other parameters) of config.json dict `d`; `bad(key, value, why)` raises."""
    scaling = d.get("rope_scaling")
    if scaling is not None and not isinstance(scaling, dict):
        bad("rope_scaling", scaling, "expected an object or null")
    params = d.get("rope_parameters")
    if params is not None and not isinstance(params, dict):
        bad("rope_parameters", params, "expected an object or null")
    key, rope = ("rope_scaling", scaling) if scaling else ("rope_parameters", params or {})
    for name, value in rope.items():
        if isinstance(value, dict):
            bad(f"{key}.{name}", value, "rope parameters per layer type are not supported (mft uses one rope for every layer)")
    theta = rope.get("rope_theta", d.get("rope_theta", default_theta))
    if not _number(theta) or theta <= 0:
        bad(f"{key}.rope_theta" if "rope_theta" in rope else "rope_theta", theta, "expected a positive number")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in rope_types:
        why = UNSUPPORTED_ROPE.get(rope_type, "unknown rope kind")
        bad(f"{key}.rope_type", rope_type, f"{why}; implemented rope types: {', '.join(sorted(rope_types))}")
    partial = rope.get("partial_rotary_factor", 1.0)
    if partial is not None and partial != 1.0:
        bad(f"{key}.partial_rotary_factor", partial, "only full rotary embeddings are implemented")
    extra = {k: v for k, v in rope.items() if k not in ("rope_type", "type", "rope_theta", "partial_rotary_factor")}
    if rope_type in NEEDS_ORIGINAL_CONTEXT and extra.get("original_max_position_embeddings") is None:
        extra["original_max_position_embeddings"] = max_position_embeddings
    return float(theta), rope_type, extra
