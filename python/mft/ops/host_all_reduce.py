"""The shared-memory sum all-reduce (csrc/kernels/host_all_reduce.cc) as a MindSpore aot op.

`host_all_reduce_op()(x, meta)` -> the sum of x over the group's ranks, x's shape, float32.
meta int32 (6,) = (token_hi, token_lo, rank, size, site, timeout_s): every rank of the group passes
the same token and site (one shared-memory segment per call site). Used by
`mft.parallel.comm.HostAllReduce`, which draws the token and checks that the group shares a host.
"""

from __future__ import annotations

import mindspore as ms

from mft.errors import MftError
from mft.ops import registry

OP = "mft.host_all_reduce"


def _shape(x, meta):
    if len(meta) != 1 or meta[0] != 6:
        raise MftError(f"host_all_reduce: meta must be int32 (6,), got shape {tuple(meta)}")
    return x


def _dtype(x, meta):
    element = x.element_type() if hasattr(x, "element_type") else x
    if element != ms.float32:
        raise MftError(f"host_all_reduce: float32 only, got {x}")
    return x


def fused_ops():
    """The aot primitive (MftHostAllReduce), registered on first use; MftError if the kernels cannot run."""
    global _OP
    _OP = registry.register_aot_op(OP, registry.kernels_library(), "MftHostAllReduce", out_shape=_shape,
                                   out_dtype=_dtype)
    return _OP


_OP = None
registry.build_at_import(fused_ops)


def host_all_reduce_op():
    """The primitive (MftError if the kernels are unavailable)."""
    return _OP if _OP is not None else fused_ops()
