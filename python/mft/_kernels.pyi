"""Type stubs for `mft._kernels`, the C++ extension (csrc/, built by CMake through rust/mft-py/build.rs).

numpy bindings of mft's CPU kernels, for tests and benchmarks; models use the
same kernels as MindSpore custom ops through `mft.ops`. Checked against the
built module by tests/python/test_stubs.py (names, parameters, defaults).
"""

from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

# Names of the MindSpore aot entry points in this library (see docs/feature/custom_ops.md).
AOT_SYMBOLS: list[str]

def rms_norm_forward(x: npt.NDArray[np.floating], weight: npt.NDArray[np.floating], eps: float) -> npt.NDArray[np.floating]:
    """y = x * rsqrt(mean(x^2, -1) + eps) * weight; float32/float16 arrays, fp32 accumulation."""

def rms_norm_backward(
    dy: npt.NDArray[np.floating], x: npt.NDArray[np.floating], weight: npt.NDArray[np.floating], eps: float
) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
    """Returns (dx, dweight); dweight is summed over all rows."""

def attention_forward(
    q: npt.ArrayLike,
    k: npt.ArrayLike,
    v: npt.ArrayLike,
    scale: float,
    seq_ends: Optional[npt.ArrayLike] = None,
    threads: int = 0,
    causal: bool = True,
    q_offset: int = 0,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Flash attention, fp32 q (B, H, S, D), k/v (B, KVH, L, D), causal or (causal=False) bidirectional
    within documents; q's rows are positions [q_offset, q_offset + S) of the L keys. Returns (out, lse).
    threads <= 0: attention_threads()."""

def attention_backward(
    dout: npt.ArrayLike,
    q: npt.ArrayLike,
    k: npt.ArrayLike,
    v: npt.ArrayLike,
    out: npt.ArrayLike,
    lse: npt.ArrayLike,
    scale: float,
    seq_ends: Optional[npt.ArrayLike] = None,
    threads: int = 0,
    causal: bool = True,
    q_offset: int = 0,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Returns (dq, dk, dv)."""

def attention_threads() -> int:
    """Threads the attention kernel uses by default (MFT_ATTENTION_THREADS or the hardware's)."""

def quant_matmul_int8(x: npt.ArrayLike, w: npt.ArrayLike, scale: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """y = x @ (w * scale[:, None]).T; x (M, K) float32, w (N, K) int8, scale (N,) float32."""

def quant_matmul_int4(x: npt.ArrayLike, w: npt.ArrayLike, scales: npt.ArrayLike, zeros: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """y = x @ dequant(w).T; w (N, K/2) uint8 in 16-column runs, scales/zeros (N, G) float32."""

def quant_matmul_isa() -> str:
    """The instruction-set path taken: avx2 or scalar."""

def quantize_rows_int8(x: npt.ArrayLike) -> Tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Per-token int8: (q (M, K) int8, scale (M,)), scale = max|x| / 127, q = round(x / scale)."""

def int8_gemm_nt(a: npt.ArrayLike, w: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """c (M, N) int32 = a (M, K) int8 @ w (N, K).T int8."""

def w8a8_matmul(x: npt.ArrayLike, w: npt.ArrayLike, scale: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """W8A8: per-token int8 x times int8 w (N, K), int32 accumulate, * x scale * scale[n]."""

def w8a8_isa() -> str:
    """The int8 GEMM path taken: avx512vnni, avx2 or scalar."""
