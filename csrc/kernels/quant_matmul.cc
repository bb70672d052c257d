#include "kernels/quant_matmul.h"
#include "kernels/isa.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MFT_QUANT_X86 1
#endif

namespace mft::kernels {
namespace {

constexpr int64_t kRows = 4;  // weight rows handled together

struct Int8W {
  const int8_t *w;
  const float *scale;
};
struct Int4W {
  const uint8_t *w;
  const float *scales;
  const float *zeros;
  int64_t group_size;
};

// ---- scalar paths ---------------------------------------------------------------
float row_dot_scalar(const Int8W &q, int64_t row, const float *x, int64_t k) {
  const int8_t *src = q.w + row * k;
  float s = 0.f;
  for (int64_t i = 0; i < k; ++i) s += static_cast<float>(src[i]) * x[i];
  return s * q.scale[row];
}

float row_dot_scalar(const Int4W &q, int64_t row, const float *x, int64_t k) {
  const uint8_t *src = q.w + row * (k / 2);
  const int64_t groups = k / q.group_size;
  float total = 0.f;
  for (int64_t g = 0; g < groups; ++g) {
    float acc = 0.f, xsum = 0.f;
    for (int64_t r = g * q.group_size / 16; r < (g + 1) * q.group_size / 16; ++r) {
      for (int j = 0; j < 8; ++j) {
        const uint8_t b = src[r * 8 + j];
        const float x0 = x[r * 16 + j], x1 = x[r * 16 + 8 + j];
        acc += static_cast<float>(b & 15) * x0 + static_cast<float>(b >> 4) * x1;
        xsum += x0 + x1;
      }
    }
    total += q.scales[row * groups + g] * (acc - q.zeros[row * groups + g] * xsum);
  }
  return total;
}

#ifdef MFT_QUANT_X86
// ---- AVX2 + FMA paths -----------------------------------------------------------
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline __m256 load_i8(const int8_t *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

// Four int8 rows against one x row: one x load feeds four FMAs.
__attribute__((target("avx2,fma"))) void rows4_dot_avx2(const Int8W &q, int64_t row0, int64_t nrows,
                                                          const float *x, int64_t k, float *out) {
  const int8_t *w0 = q.w + row0 * k;
  const int8_t *w1 = nrows > 1 ? w0 + k : w0;
  const int8_t *w2 = nrows > 2 ? w0 + 2 * k : w0;
  const int8_t *w3 = nrows > 3 ? w0 + 3 * k : w0;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(load_i8(w0 + i), xv, a0);
    a1 = _mm256_fmadd_ps(load_i8(w1 + i), xv, a1);
    a2 = _mm256_fmadd_ps(load_i8(w2 + i), xv, a2);
    a3 = _mm256_fmadd_ps(load_i8(w3 + i), xv, a3);
  }
  float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
  const int8_t *rows[4] = {w0, w1, w2, w3};
  for (; i < k; ++i) {
    for (int r = 0; r < 4; ++r) s[r] += static_cast<float>(rows[r][i]) * x[i];
  }
  for (int64_t r = 0; r < nrows; ++r) out[r] = s[r] * q.scale[row0 + r];
}

// Two int4 rows against one x row; per group: vector sums of q*x, then scale,
// and the zero point through the group's sum of x (computed once per x row).
__attribute__((target("avx2,fma"))) void rows4_dot_avx2(const Int4W &q, int64_t row0, int64_t nrows,
                                                          const float *x, int64_t k, float *out,
                                                          const float *xsum) {
  const int64_t groups = k / q.group_size, runs = q.group_size / 16;
  const __m256i mask = _mm256_set1_epi32(15);
  for (int64_t r0 = 0; r0 < nrows; r0 += 2) {
    const bool two = r0 + 1 < nrows;
    const uint8_t *p0 = q.w + (row0 + r0) * (k / 2);
    const uint8_t *p1 = two ? p0 + k / 2 : p0;
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    float corr0 = 0.f, corr1 = 0.f;
    for (int64_t g = 0; g < groups; ++g) {
      __m256 g0 = _mm256_setzero_ps(), g1 = _mm256_setzero_ps();
      for (int64_t r = g * runs; r < (g + 1) * runs; ++r) {
        const __m256 xl = _mm256_loadu_ps(x + r * 16), xh = _mm256_loadu_ps(x + r * 16 + 8);
        const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p0 + r * 8)));
        const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p1 + r * 8)));
        g0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, mask)), xl, g0);
        g0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)), xh, g0);
        g1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, mask)), xl, g1);
        g1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)), xh, g1);
      }
      const int64_t i0 = (row0 + r0) * groups + g;
      t0 = _mm256_fmadd_ps(g0, _mm256_set1_ps(q.scales[i0]), t0);
      corr0 += q.scales[i0] * q.zeros[i0] * xsum[g];
      if (two) {
        t1 = _mm256_fmadd_ps(g1, _mm256_set1_ps(q.scales[i0 + groups]), t1);
        corr1 += q.scales[i0 + groups] * q.zeros[i0 + groups] * xsum[g];
      }
    }
    out[r0] = hsum(t0) - corr0;
    if (two) out[r0 + 1] = hsum(t1) - corr1;
  }
}

int use_avx2() { return isa_level() >= 1 ? 1 : 0; }
#else
int use_avx2() { return 0; }
#endif

void group_sums(const float *x, int64_t k, int64_t group_size, float *out) {
  for (int64_t g = 0; g < k / group_size; ++g) {
    float s = 0.f;
    for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) s += x[i];
    out[g] = s;
  }
}

// ---- prefill (M > 2): dequantize a weight panel, register-blocked fp32 GEMM ----------------
// W rows [n0, n0 + kPanelN) x columns [k0, k0 + kDepth) are dequantized once into a
// (kb x nb) fp32 panel (B of tile::gemm, rows contiguous) and multiplied by the matching
// x columns for all M rows; depth blocks accumulate into y in increasing k order, so the
// result does not depend on the thread split. Dequantization costs N * K per call,
// against M * N * K multiply-adds.
constexpr int64_t kPanelN = 64;
constexpr int64_t kDepth = 256;
constexpr int64_t kRowBlockM = 64;

MFT_TILE_INLINE void dequant_panel(const Int8W &q, int64_t n0, int64_t nb, int64_t k0, int64_t kb, int64_t k,
                                   float *b) {
  for (int64_t j = 0; j < nb; ++j) {
    const int8_t *src = q.w + (n0 + j) * k + k0;
    const float s = q.scale[n0 + j];
    for (int64_t p = 0; p < kb; ++p) b[p * nb + j] = static_cast<float>(src[p]) * s;
  }
}

MFT_TILE_INLINE void dequant_panel(const Int4W &q, int64_t n0, int64_t nb, int64_t k0, int64_t kb, int64_t k,
                                   float *b) {
  const int64_t groups = k / q.group_size;
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t *src = q.w + (n0 + j) * (k / 2);
    for (int64_t r = k0 / 16; r < (k0 + kb) / 16; ++r) {
      const int64_t g = (r * 16) / q.group_size;
      const float s = q.scales[(n0 + j) * groups + g], z = q.zeros[(n0 + j) * groups + g];
      float *dst = b + (r * 16 - k0) * nb + j;
      for (int t = 0; t < 8; ++t) {
        const uint8_t byte = src[r * 8 + t];
        dst[t * nb] = (static_cast<float>(byte & 15) - z) * s;
        dst[(t + 8) * nb] = (static_cast<float>(byte >> 4) - z) * s;
      }
    }
  }
}

template <class V, int MR, class Q>
MFT_TILE_INLINE void tiled_panels(const Q &q, const float *x, float *y, int64_t m, int64_t n, int64_t k, int64_t p0,
                                  int64_t p1, float *panel) {
  for (int64_t pi = p0; pi < p1; ++pi) {
    const int64_t n0 = pi * kPanelN, nb = std::min(kPanelN, n - n0);
    for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
      const int64_t kb = std::min(kDepth, k - k0);
      dequant_panel(q, n0, nb, k0, kb, k, panel);
      for (int64_t i0 = 0; i0 < m; i0 += kRowBlockM) {
        const int64_t mb = std::min(kRowBlockM, m - i0);
        tile::gemm<V, MR, false>(x + i0 * k + k0, k, panel, nb, y + i0 * n + n0, n, mb, kb, nb, k0 > 0);
      }
    }
  }
}

#define MFT_QM_TILED_ARGS                                                                                 \
  const Q &q, const float *x, float *y, int64_t m, int64_t n, int64_t k, int64_t p0, int64_t p1, float *panel
template <class Q>
void tiled_generic(MFT_QM_TILED_ARGS) { tiled_panels<tile::v4, 4>(q, x, y, m, n, k, p0, p1, panel); }
#ifdef MFT_QUANT_X86
template <class Q>
__attribute__((target("avx2,fma"))) void tiled_avx2(MFT_QM_TILED_ARGS) {
  tiled_panels<tile::v8, 6>(q, x, y, m, n, k, p0, p1, panel);
}
template <class Q>
__attribute__((target("avx512f,avx2,fma"))) void tiled_avx512(MFT_QM_TILED_ARGS) {
  tiled_panels<tile::v16, 8>(q, x, y, m, n, k, p0, p1, panel);
}
#endif

template <class Q>
void run_tiled(const Q &q, const float *x, float *y, int64_t m, int64_t n, int64_t k) {
  void (*fn)(MFT_QM_TILED_ARGS) = tiled_generic<Q>;
#ifdef MFT_QUANT_X86
  if (isa_level() == 2) fn = tiled_avx512<Q>;
  else if (isa_level() == 1) fn = tiled_avx2<Q>;
#endif
  const int64_t panels = (n + kPanelN - 1) / kPanelN;
  parallel_rows(panels, plan_threads(panels, kPanelN * k * m / 16 + 1), [&](int64_t p0, int64_t p1, int) {
    std::vector<float> panel(static_cast<size_t>(kPanelN * kDepth));
    fn(q, x, y, m, n, k, p0, p1, panel.data());
  });
}

// Decode (M <= 2): one block of up to kRows weight rows against the x rows, each weight
// byte read once and converted in registers.
template <typename Q>
void block(const Q &q, const float *x, float *y, int64_t m, int64_t n, int64_t k, int64_t row0,
           const std::vector<float> &xsums) {
  const int64_t nrows = std::min(kRows, n - row0);
  const bool avx2 = use_avx2() != 0;
  for (int64_t i = 0; i < m; ++i) {
    float out[kRows];
#ifdef MFT_QUANT_X86
    if (avx2) {
      if constexpr (std::is_same<Q, Int4W>::value) {
        rows4_dot_avx2(q, row0, nrows, x + i * k, k, out, xsums.data() + i * (k / q.group_size));
      } else {
        rows4_dot_avx2(q, row0, nrows, x + i * k, k, out);
      }
    } else
#endif
    {
      for (int64_t r = 0; r < nrows; ++r) out[r] = row_dot_scalar(q, row0 + r, x + i * k, k);
    }
    for (int64_t r = 0; r < nrows; ++r) y[i * n + row0 + r] = out[r];
  }
}

template <typename Q>
void run(const Q &q, const float *x, float *y, int64_t m, int64_t n, int64_t k, int64_t group_size) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    std::fill(y, y + m * n, 0.f);
    return;
  }
  if (m > 2) {
    run_tiled(q, x, y, m, n, k);
    return;
  }
  std::vector<float> xsums;
  if (group_size > 0 && m <= 2) {
    xsums.resize(static_cast<size_t>(m * (k / group_size)));
    for (int64_t i = 0; i < m; ++i) group_sums(x + i * k, k, group_size, xsums.data() + i * (k / group_size));
  }
  const int64_t blocks = (n + kRows - 1) / kRows;
  parallel_rows(blocks, plan_threads(blocks, kRows * k), [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) block(q, x, y, m, n, k, b * kRows, xsums);
  });
}

}  // namespace

void quant_matmul_int8(const float *x, const int8_t *w, const float *scale, float *y, int64_t m, int64_t n,
                       int64_t k) {
  run(Int8W{w, scale}, x, y, m, n, k, 0);
}

void quant_matmul_int4(const float *x, const uint8_t *w, const float *scales, const float *zeros, float *y,
                       int64_t m, int64_t n, int64_t k, int64_t group_size) {
  run(Int4W{w, scales, zeros, group_size}, x, y, m, n, k, group_size);
}

const char *quant_matmul_isa() { return use_avx2() ? "avx2" : "scalar"; }

}  // namespace mft::kernels
