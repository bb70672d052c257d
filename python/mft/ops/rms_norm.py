"""RMSNorm: y = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in fp32.

`rms_norm(x, weight, eps, fused=False)` is the pure-MindSpore reference;
`fused=True` runs the C++ kernels in mft._kernels (csrc/kernels/rms_norm.cc)
through MindSpore's aot Custom op, forward and backward, in PyNative and in
jitted train steps. `RMSNorm` is the layer models use (switched by the model
config flag `model.fused_rmsnorm`).

The fused path supports float32 and float16 activations and weights (sums are
fp32 either way) on MindSpore's CPU target.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from mft.errors import MftError
from mft.ops import registry

FORWARD_OP = "mft.rms_norm"
BACKWARD_OP = "mft.rms_norm_backward"
_FLOATS = (ms.float32, ms.float16)


def rms_norm_reference(x, weight, eps=1e-6):
    """Composed MindSpore ops; the parity reference for the fused kernel."""
    x32 = x.astype(ms.float32)
    variance = ops.mean(x32 * x32, axis=-1, keep_dims=True)
    y = x32 * ops.rsqrt(variance + eps) * weight.astype(ms.float32)
    return y.astype(x.dtype)


def _check_shapes(x_shape, w_shape, eps_shape):
    if len(x_shape) < 1:
        raise MftError("rms_norm: x must have at least one dimension, got a scalar")
    if len(w_shape) != 1:
        raise MftError(f"rms_norm: weight must be 1-D, got shape {tuple(w_shape)}")
    hidden, n_weight = x_shape[-1], w_shape[0]
    if hidden >= 0 and n_weight >= 0 and hidden != n_weight:  # -1 = dynamic, checked by the kernel
        raise MftError(f"rms_norm: weight has {n_weight} elements but x's last dimension is {hidden} "
                       f"(x shape {tuple(x_shape)})")


def _element_type(dtype):
    # Inference functions get tensor types (Tensor[Float32]); compare their element type.
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _check_dtypes(x_dtype, w_dtype):
    for what, dt in (("x", x_dtype), ("weight", w_dtype)):
        if _element_type(dt) not in _FLOATS:
            raise MftError(f"rms_norm(fused=True): {what} dtype {dt} is not supported by the C++ kernel "
                           "(float32 or float16); use fused=False")


def _forward_shape(x_shape, w_shape, eps_shape):
    _check_shapes(x_shape, w_shape, eps_shape)
    return x_shape


def _forward_dtype(x_dtype, w_dtype, eps_dtype):
    _check_dtypes(x_dtype, w_dtype)
    return x_dtype


def _backward_shape(dy_shape, x_shape, w_shape, eps_shape):
    _check_shapes(x_shape, w_shape, eps_shape)
    return x_shape, w_shape


def _backward_dtype(dy_dtype, x_dtype, w_dtype, eps_dtype):
    _check_dtypes(x_dtype, w_dtype)
    return x_dtype, w_dtype


def _bprop(x, weight, eps, out, dout):
    dx, dweight = _BACKWARD(dout, x, weight, eps)
    return dx, dweight, ops.zeros_like(eps)


def fused_ops():
    """(forward, backward) aot primitives, registered on first use.

    forward(x, weight, eps) -> y; backward(dy, x, weight, eps) -> (dx, dweight);
    eps is a one-element float32 tensor (a tensor, not an attribute: aot
    attributes cross a C++ ABI that depends on how MindSpore was built).
    Raises MftError if the C++ library is missing or the device is not CPU.
    """
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftRmsNormBackward",
                                         out_shape=_backward_shape, out_dtype=_backward_dtype)
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftRmsNormForward",
                                        out_shape=_forward_shape, out_dtype=_forward_dtype,
                                        bprop=_bprop)
    return _FORWARD, _BACKWARD


# Built at import so that graph-mode code (which cannot run fused_ops()) finds
# them as module globals; left None where the kernels cannot run (then
# RMSNorm(fused=True) / fused_ops() raise the MftError saying why).
_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def rms_norm(x, weight, eps=1e-6, fused=False):
    """RMSNorm over the last axis of x; output has x's dtype.

    fused=False: composed MindSpore ops (any device, any float dtype).
    fused=True: the C++ kernel (CPU target, float32/float16), differentiable,
    in PyNative and inside `ms.jit` (eps must then be a Python constant).
    """
    if not fused:
        return rms_norm_reference(x, weight, eps)
    if _FORWARD is None:  # constant at trace time: dead code in graphs where the kernels loaded
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    return _FORWARD(x, weight, ops.full((1,), eps, dtype=ms.float32))


class RMSNorm(nn.Cell):
    """RMSNorm layer with a `weight` parameter of shape (hidden_size,), initialised to ones."""

    def __init__(self, hidden_size, eps=1e-6, fused=False, dtype=ms.float32):
        super().__init__()
        if int(hidden_size) <= 0:
            raise MftError(f"RMSNorm: hidden_size must be positive, got {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.eps = float(eps)
        self.fused = bool(fused)
        self.weight = Parameter(initializer("ones", (self.hidden_size,), dtype), name="weight")
        if self.fused:
            self._forward, _ = fused_ops()
            self._eps_tensor = Tensor([self.eps], ms.float32)

    def construct(self, x):
        """RMSNorm of x over its last axis: the fused C++ op when `fused`, else the composed reference."""
        if self.fused:
            return self._forward(x, self.weight, self._eps_tensor)
        return rms_norm_reference(x, self.weight, self.eps)

    def extend_repr(self):
        """What `print(cell)` shows."""
        return f"hidden_size={self.hidden_size}, eps={self.eps}, fused={self.fused}"
