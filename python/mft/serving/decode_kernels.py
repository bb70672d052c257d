"""Switch a served model's RMSNorm and RoPE to mft's C++ kernels (fewer graph kernels per decode step).

A batch-1 decode step of a small model is bound by how many kernels its
graph launches, not by arithmetic: the composed RMSNorm is five kernels
(square, mean, add eps, rsqrt, two multiplies) and the composed rotate_half
RoPE seven per tensor (two slices, negate, concat, two multiplies, add).
The fused ops (mft.ops.rms_norm, mft.ops.rope; parity-tested against those
references) are one kernel each: on the 2-layer serving fixture that takes a
decode graph from 103 launched kernels to 54.

`use_fused_kernels(model)` sets every float32 RMSNorm's `fused` and every
rotate_half Attention's `fused_rope` in place (before the decode graphs are
compiled) and returns how many of each it switched; the runner calls it
with the fused attention backend, so `--attention-backend composed` keeps
the all-MindSpore path.
"""

from __future__ import annotations

import mindspore as ms

from mft.errors import MftError


def _float32(cell) -> bool:
    return all(p.dtype == ms.float32 for p in cell.get_parameters())


def use_fused_kernels(model) -> dict:
    """{"rms_norm": n, "rope": m}: the cells switched to the C++ kernels (none where they do not load)."""
    import importlib

    from mindspore import Tensor

    from mft.models.common.attention import Attention

    # the modules (mft.ops re-exports functions of the same names)
    rms_norm = importlib.import_module("mft.ops.rms_norm")
    rope = importlib.import_module("mft.ops.rope")

    switched = {"rms_norm": 0, "rope": 0}
    try:
        forward, _ = rms_norm.fused_ops()
        rope.fused_ops()
    except MftError:
        return switched
    for _, cell in model.cells_and_names():
        if isinstance(cell, rms_norm.RMSNorm) and not cell.fused and _float32(cell):
            cell._forward = forward
            cell._eps_tensor = Tensor([cell.eps], ms.float32)
            cell.fused = True
            switched["rms_norm"] += 1
        elif isinstance(cell, Attention) and not cell.fused_rope and _float32(cell):
            cell.fused_rope = True
            switched["rope"] += 1
    return switched
