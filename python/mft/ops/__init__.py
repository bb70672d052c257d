"""Native ops, each with a pure-MindSpore reference and a `fused=` switch.

`mft.ops.registry` is the public way to turn a C++ function in a shared
library into a MindSpore op (mft's own kernels use it too).
"""

from mft.ops.attention import attention_reference, flash_attention
from mft.ops.grouped_matmul import grouped_matmul, grouped_matmul_reference
from mft.ops.moe_routing import (
    moe_gating,
    moe_gating_reference,
    moe_permute,
    moe_permute_reference,
    moe_unpermute,
    moe_unpermute_reference,
)
from mft.ops.registry import aot_op, get_op, kernels_library, register_aot_op, registered_ops
from mft.ops.rope import apply_rotary, apply_rotary_reference
from mft.ops.rms_norm import RMSNorm, rms_norm, rms_norm_reference

__all__ = [
    "apply_rotary",
    "apply_rotary_reference",
    "RMSNorm",
    "aot_op",
    "attention_reference",
    "flash_attention",
    "get_op",
    "grouped_matmul",
    "grouped_matmul_reference",
    "kernels_library",
    "moe_gating",
    "moe_gating_reference",
    "moe_permute",
    "moe_permute_reference",
    "moe_unpermute",
    "moe_unpermute_reference",
    "register_aot_op",
    "registered_ops",
    "rms_norm",
    "rms_norm_reference",
]
