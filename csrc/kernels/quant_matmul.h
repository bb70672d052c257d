// Weight-only quantized matmul: y (M, N) = x (M, K) fp32 times the
// dequantized transpose of a packed (N, K) weight, fp32 accumulation.
//   int8: w int8 (N, K), one scale per row:  W[n, k] = w[n, k] * scale[n]
//   int4: w uint8 (N, K/2) in 16-column runs (byte j of a run's 8 bytes holds
//         column k0+j in its low nibble and k0+8+j in its high nibble),
//         groups of `group_size` columns (a multiple of 16 dividing K) with
//         W[n, k] = (q[n, k] - zeros[n, g]) * scales[n, g], g = k / group_size.
// Decode (M = 1..2) reads each weight byte once and converts it in registers;
// larger M (prefill) dequantizes 64-row x 256-column weight panels to fp32 and
// multiplies them with the register-blocked GEMM of tile_gemm.h (AVX-512 / AVX2 /
// generic vectors), so prefill runs at fp32 GEMM speed plus N * K conversions.
// Compiled for AVX2+FMA and for baseline x86-64 (scalar), chosen at run time
// (MFT_KERNEL_NO_AVX2=1 forces the baseline); rows of N are split over
// MFT_KERNEL_THREADS threads (default 1, kernels/parallel.h).
#pragma once

#include <cstdint>

namespace mft::kernels {

void quant_matmul_int8(const float *x, const int8_t *w, const float *scale, float *y, int64_t m, int64_t n,
                       int64_t k);

void quant_matmul_int4(const float *x, const uint8_t *w, const float *scales, const float *zeros, float *y,
                       int64_t m, int64_t n, int64_t k, int64_t group_size);

// "avx2" or "scalar": the path the two functions above take on this CPU.
const char *quant_matmul_isa();

}  // namespace mft::kernels
