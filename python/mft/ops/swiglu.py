"""SwiGLU activation, silu(gate) * up, in one C++ kernel each way (csrc/kernels/swiglu.cc).

`swiglu(gate, up, fused=True)` takes two float32 tensors of one shape. The
composed reference (`fused=False`, any dtype) is MindSpore's silu times up:
a sigmoid and two multiplies forward, and their gradients backward, each a
kernel launch; the fused backward recomputes the sigmoid from gate instead
of keeping silu(gate).
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint

from mft.errors import MftError
from mft.ops import registry

FORWARD_OP = "mft.swiglu"
BACKWARD_OP = "mft.swiglu_backward"


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _check_shapes(*shapes):
    if any(tuple(s) != tuple(shapes[0]) for s in shapes):
        raise MftError(f"swiglu: gate and up (and dout) must have one shape; got {[tuple(s) for s in shapes]}")


def _check_dtypes(*dtypes):
    if any(_element_type(d) != ms.float32 for d in dtypes):
        raise MftError(f"swiglu(fused=True): the C++ kernel takes float32; got {dtypes} (use fused=False)")


def _forward_shape(gate, up):
    _check_shapes(gate, up)
    return gate


def _forward_dtype(gate, up):
    _check_dtypes(gate, up)
    return gate


def _backward_shape(dout, gate, up):
    _check_shapes(dout, gate, up)
    return gate, up


def _backward_dtype(dout, gate, up):
    _check_dtypes(dout, gate, up)
    return gate, up


def _bprop(gate, up, out, dout):
    return _BACKWARD(dout, gate, up)


def fused_ops():
    """(forward, backward) aot primitives, registered on first use; MftError if the kernels cannot run."""
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftSwigluBackward",
                                         out_shape=_backward_shape, out_dtype=_backward_dtype)
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftSwigluForward",
                                        out_shape=_forward_shape, out_dtype=_forward_dtype, bprop=_bprop)
    return _FORWARD, _BACKWARD


_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def swiglu_reference(gate, up):
    """Composed MindSpore ops (any device and float dtype)."""
    return mint.nn.functional.silu(gate) * up


def swiglu(gate, up, fused=True):
    """silu(gate) * up; see the module docstring."""
    if not fused:
        return swiglu_reference(gate, up)
    if _FORWARD is None:  # constant at trace time: dead code where the kernels loaded
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    return _FORWARD(gate, up)
