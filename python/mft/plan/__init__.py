"""`mft plan`: parameters, FLOPs per token and per-device memory of a recipe, by arithmetic.

Nothing is built and MindSpore is not imported: the recipe's `model` section
becomes the family's config.json dict the way the trainer makes it
(shapes.py), every parameter tensor is listed from it (same names and shapes
as the built model), and counts.py / memory.py / activations.py add them up
under the recipe's precision, optimizer, recompute and parallel layout
(layout.py). docs/feature/memory_optimization.md has the formulas.
"""

from __future__ import annotations

from mft.plan.counts import flops_per_token, param_counts
from mft.plan.layout import read_layout
from mft.plan.lora import lora_inventory
from mft.plan.memory import per_device_memory
from mft.plan.shapes import inventory, model_sizes


def make_plan(cfg) -> dict:
    """The plan of a loaded Config as a JSON-ready dict."""
    sizes = model_sizes(cfg)
    tensors = inventory(sizes)
    memory_tensors, lora = lora_inventory(cfg, tensors)  # finetune.method=lora: frozen base + adapters
    lay = read_layout(cfg, sizes["num_hidden_layers"], sizes["num_attention_heads"], sizes.kv_heads, sizes.num_experts, cfg.data.seq_len)
    return {
        "arch": sizes.arch,
        "seq_len": cfg.data.seq_len,
        "params": param_counts(sizes, tensors),
        "flops_per_token": flops_per_token(sizes, tensors, cfg.data.seq_len),
        "layout": {
            "dp": lay.dp, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep, "cp": lay.cp, "sp": lay.sp, "zero": lay.zero,
            "devices": lay.devices, "expert_dp": lay.expert_dp if sizes.num_experts else None, "problems": lay.problems,
        },
        "memory": per_device_memory(cfg, sizes, memory_tensors, lay, lora.get("activation_elements_per_token")),
        "finetune": {"method": cfg.finetune.method, **{k: v for k, v in lora.items() if k != "activation_elements_per_token"}},
    }


__all__ = ["make_plan"]
