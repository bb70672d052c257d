#include "kernels/quant_matmul_w8a8.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels/isa.h"
#include "kernels/parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MFT_W8A8_X86 1
#endif

namespace mft::kernels {
namespace {

constexpr int kNR = 4;  // w rows per register tile
constexpr int kMaxMR = 4;  // x rows per register tile (the AVX2 path uses 2)

#define MFT_W8A8_INLINE static inline __attribute__((always_inline))

// A register tile's inputs: MR x rows (stride lda) with their sums, kNR w rows (stride k).
struct TileIn {
  const int8_t *a[kMaxMR];
  int32_t asum[kMaxMR];
  const int8_t *w[kNR];
  int64_t k;
};

// ---- scalar ------------------------------------------------------------------------
template <int MR>
void tile_scalar(const TileIn &t, int32_t out[kMaxMR][kNR]) {
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kNR; ++j) {
      int32_t s = 0;
      for (int64_t p = 0; p < t.k; ++p) s += static_cast<int32_t>(t.a[i][p]) * static_cast<int32_t>(t.w[j][p]);
      out[i][j] = s;
    }
}

#ifdef MFT_W8A8_X86
#define MFT_AVX2_TARGET __attribute__((target("avx2,fma")))

MFT_W8A8_INLINE MFT_AVX2_TARGET int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// ---- AVX-512 VNNI: u8 (w + 128) x s8 (q) -> s32, minus 128 * sum(q) ----------------
#define MFT_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma")))

MFT_W8A8_INLINE MFT_VNNI_TARGET int32_t hsum_i32_512(__m512i v) {
  alignas(64) int32_t lane[16];
  _mm512_store_si512(lane, v);
  int32_t s = 0;
  for (int i = 0; i < 16; ++i) s += lane[i];
  return s;
}

// acc += u8 * s8 in 4-byte groups. Inline asm because GCC 12 copies the accumulator
// around the intrinsic (one extra zmm move per vpdpbusd in the inner loop).
MFT_W8A8_INLINE MFT_VNNI_TARGET __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// Named accumulators (an array of vectors made GCC copy and spill them every step).
#define MFT_ROW_DECL(V, i) V c##i##0 = zero, c##i##1 = zero, c##i##2 = zero, c##i##3 = zero;
#define MFT_ROW_OUT(i, HS, CORR)                                   \
  if constexpr (MR > i) {                                          \
    out[i][0] = HS(c##i##0) CORR(i);                               \
    out[i][1] = HS(c##i##1) CORR(i);                               \
    out[i][2] = HS(c##i##2) CORR(i);                               \
    out[i][3] = HS(c##i##3) CORR(i);                               \
  }

#define MFT_VNNI_ROW(i, LOAD)                                      \
  if constexpr (MR > i) {                                          \
    const __m512i av = LOAD(t.a[i] + p);                           \
    c##i##0 = dpbusd(c##i##0, w0, av);                \
    c##i##1 = dpbusd(c##i##1, w1, av);                \
    c##i##2 = dpbusd(c##i##2, w2, av);                \
    c##i##3 = dpbusd(c##i##3, w3, av);                \
  }
#define MFT_VNNI_STEP(LOAD)                                        \
  const __m512i w0 = _mm512_xor_si512(LOAD(t.w[0] + p), flip);     \
  const __m512i w1 = _mm512_xor_si512(LOAD(t.w[1] + p), flip);     \
  const __m512i w2 = _mm512_xor_si512(LOAD(t.w[2] + p), flip);     \
  const __m512i w3 = _mm512_xor_si512(LOAD(t.w[3] + p), flip);     \
  MFT_VNNI_ROW(0, LOAD) MFT_VNNI_ROW(1, LOAD) MFT_VNNI_ROW(2, LOAD) MFT_VNNI_ROW(3, LOAD)
#define MFT_VNNI_CORR(i) - 128 * t.asum[i]

template <int MR>
MFT_W8A8_INLINE MFT_VNNI_TARGET void tile_vnni_body(const TileIn &t, int32_t out[kMaxMR][kNR]) {
  const __m512i zero = _mm512_setzero_si512();
  MFT_ROW_DECL(__m512i, 0) MFT_ROW_DECL(__m512i, 1) MFT_ROW_DECL(__m512i, 2) MFT_ROW_DECL(__m512i, 3)
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  int64_t p = 0;
#define MFT_LOAD_FULL(ptr) _mm512_loadu_si512(ptr)
  for (; p + 64 <= t.k; p += 64) {
    MFT_VNNI_STEP(MFT_LOAD_FULL)
  }
  if (p < t.k) {  // masked tail: x lanes past K load as 0, so their (w + 128) * 0 adds nothing
    const __mmask64 mask = _cvtu64_mask64(~0ULL >> (64 - (t.k - p)));
#define MFT_LOAD_TAIL(ptr) _mm512_maskz_loadu_epi8(mask, ptr)
    MFT_VNNI_STEP(MFT_LOAD_TAIL)
  }
  MFT_ROW_OUT(0, hsum_i32_512, MFT_VNNI_CORR) MFT_ROW_OUT(1, hsum_i32_512, MFT_VNNI_CORR)
  MFT_ROW_OUT(2, hsum_i32_512, MFT_VNNI_CORR) MFT_ROW_OUT(3, hsum_i32_512, MFT_VNNI_CORR)
}

template <int MR>
MFT_VNNI_TARGET void tile_vnni(const TileIn &t, int32_t out[kMaxMR][kNR]) {
  tile_vnni_body<MR>(t, out);
}

// ---- AVX2: maddubs(|w| as u8, sign(q, w) as s8) -> s16 pairs, madd with 1s -> s32 --------


#define MFT_AVX2_ROW(i, j)                                                                   \
  if constexpr (MR > i) {                                                                    \
    const __m256i pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a##i, wv));            \
    c##i##j = _mm256_add_epi32(c##i##j, _mm256_madd_epi16(pairs, ones));                     \
  }
#define MFT_AVX2_COL(j)                                                                      \
  {                                                                                          \
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.w[j] + p));    \
    const __m256i wabs = _mm256_abs_epi8(wv); /* -128 -> 0x80, read as u8 128: still |w| */  \
    MFT_AVX2_ROW(0, j) MFT_AVX2_ROW(1, j)                                                    \
  }
#define MFT_AVX2_TAIL(i)                                                                     \
  if constexpr (MR > i) {                                                                    \
    for (int j = 0; j < kNR; ++j)                                                            \
      for (int64_t q = p; q < t.k; ++q)                                                      \
        out[i][j] += static_cast<int32_t>(t.a[i][q]) * static_cast<int32_t>(t.w[j][q]);     \
  }
#define MFT_NO_CORR(i)

// x rows 0..MR-1 (MR <= 2: 8 accumulators + operands fit the 16 ymm registers).
template <int MR>
MFT_W8A8_INLINE MFT_AVX2_TARGET void tile_avx2_body(const TileIn &t, int32_t out[kMaxMR][kNR]) {
  static_assert(MR <= 2, "the AVX2 tile holds at most 2 x rows");
  const __m256i zero = _mm256_setzero_si256();
  MFT_ROW_DECL(__m256i, 0) MFT_ROW_DECL(__m256i, 1)
  const __m256i ones = _mm256_set1_epi16(1);
  int64_t p = 0;
  for (; p + 32 <= t.k; p += 32) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.a[0] + p));
    const __m256i a1 = MR > 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.a[1] + p)) : a0;
    MFT_AVX2_COL(0) MFT_AVX2_COL(1) MFT_AVX2_COL(2) MFT_AVX2_COL(3)
  }
  MFT_ROW_OUT(0, hsum_i32, MFT_NO_CORR) MFT_ROW_OUT(1, hsum_i32, MFT_NO_CORR)
  MFT_AVX2_TAIL(0) MFT_AVX2_TAIL(1)
}

template <int MR>
MFT_AVX2_TARGET void tile_avx2(const TileIn &t, int32_t out[kMaxMR][kNR]) {
  tile_avx2_body<MR>(t, out);
}

// ---- per-token quantization --------------------------------------------------------
// (GCC 12's headers fill the masked-off lanes of these intrinsics with an "undefined"
// vector that -Wmaybe-uninitialized reports at every use; there are no masked-off lanes.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
MFT_W8A8_INLINE __attribute__((target("avx512f"))) void quantize_row_avx512(const float *x, int8_t *q,
                                                                                    float s, int64_t k) {
  const __m512 sv = _mm512_set1_ps(s);
  const __m512 lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + i), sv);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  for (; i < k; ++i) q[i] = static_cast<int8_t>(std::nearbyint(std::min(127.f, std::max(-127.f, x[i] / s))));
}
__attribute__((target("avx512f"))) void quantize_row_avx512_fn(const float *x, int8_t *q, float s,
                                                                        int64_t k) {
  quantize_row_avx512(x, q, s, k);
}
#pragma GCC diagnostic pop

int gemm_level() {
  static const int level = [] {
    if (isa_level() >= 2 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")) return 2;
    return isa_level() >= 1 ? 1 : 0;
  }();
  return level;
}
#else
int gemm_level() { return 0; }
#endif

void quantize_row(const float *x, int8_t *q, float *scale, int64_t k, int32_t *sum) {
  float amax = 0.f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax > 0.f ? amax / 127.f : 1.f;
  *scale = s;
#ifdef MFT_W8A8_X86
  if (isa_level() >= 2) {
    quantize_row_avx512_fn(x, q, s, k);
  } else
#endif
  {
    for (int64_t i = 0; i < k; ++i) q[i] = static_cast<int8_t>(std::nearbyint(std::min(127.f, std::max(-127.f, x[i] / s))));
  }
  if (sum != nullptr) {
    int32_t t = 0;
    for (int64_t i = 0; i < k; ++i) t += q[i];
    *sum = t;
  }
}

using TileFn = void (*)(const TileIn &, int32_t[kMaxMR][kNR]);

struct Path {
  TileFn tiles[kMaxMR + 1];  // by MR
  int max_mr;
};

Path path() {
#ifdef MFT_W8A8_X86
  if (gemm_level() == 2) return {{nullptr, tile_vnni<1>, tile_vnni<2>, tile_vnni<3>, tile_vnni<4>}, 4};
  if (gemm_level() == 1) return {{nullptr, tile_avx2<1>, tile_avx2<2>, nullptr, nullptr}, 2};
#endif
  return {{nullptr, tile_scalar<1>, tile_scalar<2>, tile_scalar<3>, tile_scalar<4>}, 4};
}

// Runs every (x row block, w row block) tile; emit(i, n0, nvalid, const int32_t *acc4) per x row.
// w rows are taken in panels of about 128 KB, and every x row block is run against
// one panel before the next, so the panel stays in L2 and the x rows in L1.
template <class Emit>
void gemm(const int8_t *a, const int32_t *asum, int64_t lda, const int8_t *w, int64_t m, int64_t n, int64_t k,
          const Emit &emit) {
  if (m <= 0 || n <= 0) return;
  const Path pth = path();
  const int64_t blocks = (n + kNR - 1) / kNR;
  const int64_t panel = std::max<int64_t>(1, (128 * 1024) / std::max<int64_t>(1, k * kNR));
  parallel_rows(blocks, plan_threads(blocks, kNR * k * std::max<int64_t>(1, m)), [&](int64_t b0, int64_t b1, int) {
    for (int64_t p0 = b0; p0 < b1; p0 += panel) {
      const int64_t p1 = std::min(b1, p0 + panel);
      for (int64_t i0 = 0; i0 < m; i0 += pth.max_mr) {
        const int mr = static_cast<int>(std::min<int64_t>(pth.max_mr, m - i0));
        TileIn t;
        t.k = k;
        for (int i = 0; i < kMaxMR; ++i) {
          const int64_t row = i0 + std::min(i, mr - 1);
          t.a[i] = a + row * lda;
          t.asum[i] = asum[row];
        }
        for (int64_t b = p0; b < p1; ++b) {
          const int64_t n0 = b * kNR;
          const int nvalid = static_cast<int>(std::min<int64_t>(kNR, n - n0));
          for (int j = 0; j < kNR; ++j) t.w[j] = w + (n0 + std::min(j, nvalid - 1)) * k;
          int32_t out[kMaxMR][kNR];
          pth.tiles[mr](t, out);
          for (int i = 0; i < mr; ++i) emit(i0 + i, n0, nvalid, out[i]);
        }
      }
    }
  });
}

}  // namespace

void quantize_rows_int8(const float *x, int8_t *q, float *scale, int64_t m, int64_t k) {
  for (int64_t i = 0; i < m; ++i) quantize_row(x + i * k, q + i * k, scale + i, k, nullptr);
}

void int8_gemm_nt(const int8_t *a, const int8_t *w, int32_t *c, int64_t m, int64_t n, int64_t k) {
  std::vector<int32_t> asum(static_cast<size_t>(std::max<int64_t>(m, 0)), 0);
  for (int64_t i = 0; i < m; ++i) {
    int32_t s = 0;
    for (int64_t p = 0; p < k; ++p) s += a[i * k + p];
    asum[i] = s;
  }
  gemm(a, asum.data(), k, w, m, n, k, [&](int64_t i, int64_t n0, int nvalid, const int32_t *acc) {
    for (int j = 0; j < nvalid; ++j) c[i * n + n0 + j] = acc[j];
  });
}

void w8a8_matmul(const float *x, const int8_t *w, const float *wscale, float *y, int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    std::fill(y, y + m * n, 0.f);
    return;
  }
  std::vector<int8_t> q(static_cast<size_t>(m * k));
  std::vector<float> xs(static_cast<size_t>(m));
  std::vector<int32_t> asum(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) quantize_row(x + i * k, q.data() + i * k, xs.data() + i, k, asum.data() + i);
  gemm(q.data(), asum.data(), k, w, m, n, k, [&](int64_t i, int64_t n0, int nvalid, const int32_t *acc) {
    float *yr = y + i * n + n0;
    for (int j = 0; j < nvalid; ++j) yr[j] = (static_cast<float>(acc[j]) * xs[i]) * wscale[n0 + j];
  });
}

const char *w8a8_isa() {
  switch (gemm_level()) {
    case 2: return "avx512vnni";
    case 1: return "avx2";
    default: return "scalar";
  }
}

}  // namespace mft::kernels
