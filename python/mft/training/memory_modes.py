"""`train.recompute` and `train.offload_activations`: what the backward keeps, applied to a built model.

- recompute full: each decoder layer keeps only its input; the layer runs again in backward.
- recompute selective: only the parts whose kept tensors are large and cheap to recompute run again:
  the attention core (`AttentionCore`: scores and softmax probabilities, heads x seq_len per token on
  the composed path) and the SwiGLU activation (`SwiGLU`: gate, silu(gate), up and their product).
  The projections' inputs stay kept, so no matmul is recomputed. MLA attention and routed MoE experts
  have no such cells: there selective recomputes the dense / shared-expert MLP activations only.
- recompute_layers N: either mode on the first N decoder layers only.
- offload_activations: MindSpore's `Cell.offload()` on every decoder layer (activations to host memory
  in forward, prefetched in backward). It needs graph mode and a device with its own memory; the checks
  run before anything is written (`check_offload`).
"""

from __future__ import annotations

from mft.errors import MftError


def check_offload(cfg) -> None:
    if not cfg.train.offload_activations:
        return
    if cfg.run.device == "CPU":
        raise MftError("train.offload_activations: on CPU host and device memory are one, so there is nowhere to "
                       "offload to; set train.offload_activations=false (or run on Ascend/GPU)")
    if cfg.run.mode != "graph":
        raise MftError("train.offload_activations needs run.mode=graph (MindSpore offloads only in graph mode)")
    if cfg.train.recompute != "none":
        raise MftError(f"train.offload_activations with train.recompute={cfg.train.recompute}: choose one of them "
                       "(a recomputed layer keeps nothing to offload)")


def selected_layers(cfg, model) -> list:
    layers = list(model.model.layers)
    return layers[: cfg.train.recompute_layers or len(layers)]


def selective_cells(layer) -> list:
    """The attention-core and SwiGLU-activation cells inside one decoder layer."""
    from mft.models.common.attention import AttentionCore
    from mft.models.common.mlp import SwiGLU

    return [cell for _, cell in layer.cells_and_names() if isinstance(cell, (AttentionCore, SwiGLU))]


def apply_memory_modes(cfg, model) -> dict:
    """Marks the cells; returns {"recomputed": n cells, "offloaded": n layers} for the log."""
    mode = cfg.train.recompute
    recomputed = offloaded = 0
    if mode == "full":
        for layer in selected_layers(cfg, model):
            layer.recompute()
            recomputed += 1
    elif mode == "selective":
        for layer in selected_layers(cfg, model):
            for cell in selective_cells(layer):
                cell.recompute()
                recomputed += 1
    if cfg.train.offload_activations:
        for layer in model.model.layers:
            layer.offload()
            offloaded += 1
    return {"recomputed": recomputed, "offloaded": offloaded}
