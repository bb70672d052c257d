// W8A8 matmul (SmoothQuant inference): int8 activations per token, int8
// weights per output channel, int32 accumulation.
//   x fp32 (M, K) -> q int8 (M, K), xs fp32 (M): xs[m] = max_k |x[m, k]| / 127
//     (1 for an all-zero row), q = round_half_even(x / xs) in [-127, 127]
//   acc[m, n] = sum_k q[m, k] * w[n, k]  (int32, exact)
//   y[m, n] = (float(acc[m, n]) * xs[m]) * wscale[n]
// w may use the whole int8 range [-128, 127] (files from other quantizers).
//
// The int8 GEMM keeps a 4 x 4 block of (x row, w row) int32 dot products in
// registers over the whole K (both operands are K-contiguous) and is chosen
// at run time per instruction set:
//   avx512vnni: vpdpbusd on (w + 128) as u8 times q as s8, minus 128 * sum_k q[m, k]
//   avx2:       vpmaddubsw on |w| as u8 times sign(q, w) as s8 (pair sums stay
//               below 2 * 128 * 127 < 2^15, so no saturation), vpmaddwd with 1s
//   scalar:     plain int32 loops
// (MFT_KERNEL_NO_AVX512 / MFT_KERNEL_NO_AVX2 narrow it, kernels/isa.h). Blocks
// of w rows are split over MFT_KERNEL_THREADS threads (kernels/parallel.h).
#pragma once

#include <cstdint>

namespace mft::kernels {

// Per-token symmetric int8 quantization of x rows (the activation half of W8A8).
void quantize_rows_int8(const float *x, int8_t *q, float *scale, int64_t m, int64_t k);

// c (M, N) int32 = a (M, K) int8 times w (N, K) int8 transposed. a must stay in [-127, 127].
void int8_gemm_nt(const int8_t *a, const int8_t *w, int32_t *c, int64_t m, int64_t n, int64_t k);

// The whole W8A8 linear: quantize x per token, int8 GEMM, rescale to fp32.
void w8a8_matmul(const float *x, const int8_t *w, const float *wscale, float *y, int64_t m, int64_t n, int64_t k);

// "avx512vnni", "avx2" or "scalar": the int8 GEMM path on this CPU.
const char *w8a8_isa();

}  // namespace mft::kernels
