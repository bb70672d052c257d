"""Rotary position embedding: fused C++ kernel and its MindSpore reference.

`apply_rotary(x, cos, sin, interleaved=False, fused=True)` takes x
(B, heads, S, D) float32 and cos/sin (1 or B, 1, S, D) as produced by
mft.models.common.rope.RotaryEmbedding, and returns x rotated:

- interleaved=False: HF `rotate_half` layout, x * cos + rotate_half(x) * sin
  (mft.ops.rope_reference.apply_rope);
- interleaved=True: DeepSeek `rope_interleave` — x's pairs (x0, x1), (x2, x3), ...
  are de-interleaved, then rotated as above; the result is in the
  de-interleaved layout, exactly as apply_rope_interleaved.

fused=True runs csrc/kernels/rope.cc through MindSpore's aot Custom op (CPU,
float32), forward and backward (the transpose rotation), in PyNative and
inside ms.jit. cos and sin get zero gradients (they come from positions).
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

from mft.errors import MftError
from mft.ops.rope_reference import apply_rope, apply_rope_interleaved
from mft.ops import registry

FORWARD_OP = "mft.rope"
BACKWARD_OP = "mft.rope_backward"


def apply_rotary_reference(x, cos, sin, interleaved=False):
    """The model's composed apply functions (any device/dtype)."""
    return apply_rope_interleaved(x, cos, sin) if interleaved else apply_rope(x, cos, sin)


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _check(x, cos, sin, mode):
    if len(x) != 4 or x[3] % 2:
        raise MftError(f"rope: x must be (batch, heads, seq, head_dim) with an even head_dim; got {tuple(x)}")
    if (len(cos) != 4 or tuple(cos) != tuple(sin) or cos[0] not in (1, x[0]) or cos[1] != 1
            or cos[2] != x[2] or cos[3] != x[3]):
        raise MftError(f"rope: cos and sin must be (1 or {x[0]}, 1, {x[2]}, {x[3]}) for x {tuple(x)}; "
                       f"got cos {tuple(cos)}, sin {tuple(sin)}")


def _shape(x, cos, sin, mode):
    _check(x, cos, sin, mode)
    return x


def _dtype(x, cos, sin, mode):
    for what, dt in (("x", x), ("cos", cos), ("sin", sin)):
        if _element_type(dt) != ms.float32:
            raise MftError(f"rope(fused=True): {what} dtype {dt} is not supported by the C++ kernel (float32); "
                           "use fused=False")
    return x


def _bprop(x, cos, sin, mode, out, dout):
    return _BACKWARD(dout, cos, sin, mode), ops.zeros_like(cos), ops.zeros_like(sin), ops.zeros_like(mode)


def fused_ops():
    """(forward, backward): forward(x, cos, sin, mode (1,) int32) -> out; backward(dout, cos, sin, mode) -> dx.
    mode 0 = rotate_half layout, 1 = interleaved."""
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftRopeBackward", out_shape=_shape, out_dtype=_dtype)
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftRopeForward", out_shape=_shape, out_dtype=_dtype,
                                        bprop=_bprop)
    return _FORWARD, _BACKWARD


_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def apply_rotary(x, cos, sin, interleaved=False, fused=True):
    """Rotated x (B, heads, S, D); see the module docstring. `interleaved` must be a Python bool."""
    if not fused:
        return apply_rotary_reference(x, cos, sin, interleaved)
    if _FORWARD is None:
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    mode = ops.full((1,), 1 if interleaved else 0, dtype=ms.int32)
    return _FORWARD(x, cos, sin, mode)


__all__ = ["apply_rotary", "apply_rotary_reference"]
