"""On-disk layouts of quantized linears, and the in-memory layout of the kernels.

w4a16 -> the GPTQ layout (AutoGPTQ / transformers `quant_method: "gptq"`,
`checkpoint_format: "gptq"`, sym=false, desc_act=false), per linear `P`:
  P.qweight  int32 (K/8, N): qweight[i, n] bits 4j..4j+3 = q[n, 8i + j]
  P.qzeros   int32 (G, N/8): qzeros[g, i] bits 4j..4j+3 = zero[8i + j, g] - 1
  P.scales   float16 (G, N)
  P.g_idx    int32 (K,) = k // group_size
  w[n, k] = (q[n, k] - zero[n, g]) * scale[n, g], g = k // group_size.
w8a16 -> compressed-tensors `format: "int-quantized"` (weights int8,
strategy "channel", symmetric, no activation quantization):
  P.weight        int8 (N, K)
  P.weight_scale  float32 (N, 1);  w = weight * weight_scale.
w4a16 --method awq -> the AutoAWQ "GEMM" layout (`quant_method: "awq"`, `version: "gemm"`,
zero_point true), as AutoAWQ, transformers and vLLM read it, per linear `P`:
  P.qweight  int32 (K, N/8): bits 4i..4i+3 of [k, j] = q[8j + AWQ_ORDER[i], k]
  P.qzeros   int32 (G, N/8): bits 4i..4i+3 of [g, j] = zero[8j + AWQ_ORDER[i], g]  (zero itself, 0..15)
  P.scales   float16 (G, N)
  w[n, k] = (q[n, k] - zero[n, g]) * scale[n, g], g = k // group_size.
Everything else (norms, embeddings, lm_head, biases) stays as it was.

Kernel layout of int4 (mft.ops.quant_matmul): (N, K/2) uint8, each run of 16
columns k0..k0+15 of a row in 8 bytes, byte j = q[k0+j] | q[k0+8+j] << 4,
so one 8-byte load unpacks into two contiguous 8-float vectors.
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError


def pack_rows_int32(q: np.ndarray) -> np.ndarray:
    """(R, C) values in [0, 15] -> (R/8, C) int32, 8 rows per word, low bits first."""
    r, c = q.shape
    q = q.astype(np.uint32).reshape(r // 8, 8, c)
    out = np.zeros((r // 8, c), dtype=np.uint32)
    for j in range(8):
        out |= q[:, j, :] << np.uint32(4 * j)
    return out.view(np.int32)


def unpack_rows_int32(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_rows_int32: (R/8, C) int32 -> (R, C) uint8."""
    p = packed.view(np.uint32)
    parts = [((p >> np.uint32(4 * j)) & np.uint32(15)).astype(np.uint8) for j in range(8)]
    return np.stack(parts, axis=1).reshape(p.shape[0] * 8, p.shape[1])


def gptq_tensors(prefix: str, q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group_size: int) -> dict:
    """q (N, K) uint8, scales/zeros (N, G) -> GPTQ v1 tensors of one linear."""
    n, k = q.shape
    if n % 8 or k % 8:
        raise MftError(f"{prefix}: GPTQ int4 packing needs in- and out-features divisible by 8, got ({n}, {k})")
    g = k if group_size <= 0 else group_size
    z = zeros.astype(np.int64) - 1
    if z.min() < 0 or z.max() > 14:
        raise ValueError(f"{prefix}: zero points outside [1, 15]")
    return {
        f"{prefix}.qweight": pack_rows_int32(np.ascontiguousarray(q.T)),
        f"{prefix}.qzeros": np.ascontiguousarray(pack_rows_int32(z).T),  # (N, G) packed along N, stored (G, N/8)
        f"{prefix}.scales": np.ascontiguousarray(scales.T).astype(np.float16),
        f"{prefix}.g_idx": (np.arange(k, dtype=np.int32) // g).astype(np.int32),
    }


def read_gptq(prefix: str, tensors: dict, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ v1 tensors of one linear -> (q (N, K) uint8, scales (N, G) f32, zeros (N, G) f32)."""
    try:
        qweight, qzeros, scales = (tensors[f"{prefix}.{s}"] for s in ("qweight", "qzeros", "scales"))
    except KeyError as e:
        raise MftError(f"{source}: GPTQ linear {prefix} lacks tensor {e.args[0]}") from None
    q = unpack_rows_int32(np.ascontiguousarray(qweight).view(np.int32)).T  # (N, K)
    n, k = q.shape
    groups = scales.shape[0]
    if scales.shape != (groups, n) or qzeros.shape != (groups, n // 8) or groups == 0 or k % groups:
        raise MftError(f"{source}: GPTQ linear {prefix}: scales {scales.shape} / qzeros {qzeros.shape} do not fit qweight {qweight.shape}")
    g_idx = tensors.get(f"{prefix}.g_idx")
    if g_idx is not None and not np.array_equal(np.asarray(g_idx), np.arange(k) // (k // groups)):
        raise MftError(f"{source}: GPTQ linear {prefix}: g_idx is not k // group_size (desc_act checkpoints are not supported)")
    zeros = unpack_rows_int32(np.ascontiguousarray(np.asarray(qzeros).view(np.int32).T)).astype(np.float32) + 1.0  # (N, G)
    return np.ascontiguousarray(q), np.ascontiguousarray(scales.T.astype(np.float32)), np.ascontiguousarray(zeros)


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # output channel of nibble i within each group of 8


def pack_cols_awq(v: np.ndarray) -> np.ndarray:
    """(R, C) values in [0, 15] -> (R, C/8) int32, nibble i of word j = v[:, 8j + AWQ_ORDER[i]]."""
    r, c = v.shape
    v = v.astype(np.uint32).reshape(r, c // 8, 8)
    out = np.zeros((r, c // 8), dtype=np.uint32)
    for i, col in enumerate(AWQ_ORDER):
        out |= v[:, :, col] << np.uint32(4 * i)
    return out.view(np.int32)


def unpack_cols_awq(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_cols_awq: (R, C/8) int32 -> (R, C) uint8."""
    p = np.ascontiguousarray(packed).view(np.uint32)
    out = np.zeros((p.shape[0], p.shape[1], 8), dtype=np.uint8)
    for i, col in enumerate(AWQ_ORDER):
        out[:, :, col] = ((p >> np.uint32(4 * i)) & np.uint32(15)).astype(np.uint8)
    return out.reshape(p.shape[0], p.shape[1] * 8)


def awq_tensors(prefix: str, q: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> dict:
    """q (N, K) uint8, scales/zeros (N, G) -> AutoAWQ GEMM tensors of one linear."""
    n, k = q.shape
    if n % 8:
        raise MftError(f"{prefix}: AWQ int4 packing needs out-features divisible by 8, got {n}")
    return {
        f"{prefix}.qweight": pack_cols_awq(np.ascontiguousarray(q.T)),
        f"{prefix}.qzeros": pack_cols_awq(np.ascontiguousarray(zeros.T).astype(np.int64)),
        f"{prefix}.scales": np.ascontiguousarray(scales.T).astype(np.float16),
    }


def read_awq(prefix: str, tensors: dict, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AutoAWQ GEMM tensors of one linear -> (q (N, K) uint8, scales (N, G) f32, zeros (N, G) f32)."""
    try:
        qweight, qzeros, scales = (tensors[f"{prefix}.{s}"] for s in ("qweight", "qzeros", "scales"))
    except KeyError as e:
        raise MftError(f"{source}: AWQ linear {prefix} lacks tensor {e.args[0]}") from None
    q = unpack_cols_awq(np.asarray(qweight).view(np.int32)).T  # (N, K)
    n, k = q.shape
    groups = scales.shape[0]
    if scales.shape != (groups, n) or qzeros.shape != (groups, n // 8) or groups == 0 or k % groups:
        raise MftError(f"{source}: AWQ linear {prefix}: scales {scales.shape} / qzeros {qzeros.shape} do not fit qweight {qweight.shape}")
    zeros = unpack_cols_awq(np.asarray(qzeros).view(np.int32)).T.astype(np.float32)  # (N, G)
    return np.ascontiguousarray(q), np.ascontiguousarray(scales.T.astype(np.float32)), np.ascontiguousarray(zeros)


def kernel_int4(q: np.ndarray) -> np.ndarray:
    """(N, K) uint8 codes -> (N, K/2) uint8 in the kernel's 16-column runs."""
    n, k = q.shape
    if k % 16:
        raise MftError(f"int4 kernel layout needs in-features divisible by 16, got {k}")
    runs = q.reshape(n, k // 16, 2, 8).astype(np.uint8)
    return np.ascontiguousarray((runs[:, :, 0, :] | (runs[:, :, 1, :] << 4)).reshape(n, k // 2))


def unkernel_int4(packed: np.ndarray) -> np.ndarray:
    """Inverse of kernel_int4."""
    n, half = packed.shape
    runs = packed.reshape(n, half // 8, 1, 8)
    return np.concatenate([runs & 15, runs >> 4], axis=2).reshape(n, half * 2).astype(np.uint8)
