"""Which linears of a model get quantized, and their Hugging Face names.

Every `_Linear` (attention q/k/v/o, MLP gate/up/down, MLA projections) except
the LM head: it is tied to the embedding in small models and is the most
sensitive layer, so it stays float (listed in `ignore`). MoE expert stacks
(GroupedLinear) are quantized per expert (`expert_stacks`, mft.quant.grouped);
MoE routers stay float (listed in `ignore` with the LM head).
"""

from __future__ import annotations

SKIPPED_CELLS = ("lm_head",)


def hf_name_of(model, path: str) -> str:
    mapping = model.hf_mapping
    name = f"{path}.weight"
    hf = mapping.param_to_hf_name(name, model.config) if model.hf_mapping_needs_config else mapping.param_to_hf_name(name)
    return hf[: -len(".weight")]


def quantizable_linears(model) -> dict:
    """HF prefix -> (mft cell path, cell), in model order."""
    from mft.parallel.layers import _Linear

    out = {}
    for path, cell in model.cells_and_names():
        if isinstance(cell, _Linear) and path and path.split(".")[-1] not in SKIPPED_CELLS and not getattr(cell, "is_lora", False):
            out[hf_name_of(model, path)] = (path, cell)
    return out


def expert_stacks(model) -> dict:
    """HF prefix of the stack (`...experts.<name>`, no index) -> (mft cell path, GroupedLinear), in model order.
    Expert e's linear is named `expert_prefix(prefix, e)`."""
    from mft.parallel.layers import GroupedLinear

    return {hf_name_of(model, path): (path, cell) for path, cell in model.cells_and_names()
            if isinstance(cell, GroupedLinear)}


def expert_prefix(stack_prefix: str, e: int) -> str:
    return stack_prefix.replace(".experts.", f".experts.{e}.", 1)


def ignored_modules(model) -> list[str]:
    from mft.models.common.moe import TopKRouter
    from mft.parallel.layers import _Linear

    names = []
    for path, cell in model.cells_and_names():
        if isinstance(cell, _Linear) and path.split(".")[-1] in SKIPPED_CELLS or isinstance(cell, TopKRouter):
            names.append(hf_name_of(model, path))
    return names
