// Register-blocked small GEMMs and a vector exp for the attention tiles.
//
// Everything here is an always-inline template over a GCC vector type V
// (4, 8 or 16 floats), so a kernel body that uses it can be compiled once per
// instruction set (AVX-512, AVX2+FMA, baseline / other architectures) by
// instantiating it inside functions with different target attributes; see
// attention.cc. With FMA enabled GCC contracts `x += s * b` into vfmadd.
//
// The micro-kernel keeps an MR x (NV * lanes) block of C in registers for the
// whole k loop: per k step it loads NV vectors of one B row and broadcasts MR
// scalars of A (MR * NV independent accumulators hide the FMA latency). A is
// read either row-major (A(r, p) = a[r * lda + p]) or as a transposed view
// (A(r, p) = a[p * lda + r], used for P^T and dS^T), so no operand is copied;
// B rows are contiguous (callers pack K^T / V^T tiles once per tile).
// Every C element is summed over p in increasing order by one call, so results
// do not depend on how callers split work across threads.
#pragma once

#include <cstdint>
#include <cstring>

namespace mft::kernels::tile {

#define MFT_TILE_INLINE static inline __attribute__((always_inline))

typedef float v4 __attribute__((vector_size(16)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));

template <class V>
constexpr int lanes = static_cast<int>(sizeof(V) / sizeof(float));

template <class V>
MFT_TILE_INLINE V vload(const float *p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
MFT_TILE_INLINE void vstore(float *p, V v) {
  std::memcpy(p, &v, sizeof v);
}
template <class V>
MFT_TILE_INLINE V splat(float x) {
  return V{} + x;
}
// Horizontal sum / max by halving the vector (log2(lanes) vector ops; the
// order is fixed by the vector width, so results do not depend on threads).
// Plain overloads: GCC drops vector attributes from template arguments.
MFT_TILE_INLINE float hsum(v4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }
MFT_TILE_INLINE float hmax(v4 v) {
  const float a = v[0] > v[2] ? v[0] : v[2], b = v[1] > v[3] ? v[1] : v[3];
  return a > b ? a : b;
}
#define MFT_TILE_HALVES(W, H)                                                                \
  MFT_TILE_INLINE H lo_half(W v) {                                                           \
    H h;                                                                                     \
    std::memcpy(&h, &v, sizeof h);                                                           \
    return h;                                                                                \
  }                                                                                          \
  MFT_TILE_INLINE H hi_half(W v) {                                                           \
    H h;                                                                                     \
    std::memcpy(&h, reinterpret_cast<const char *>(&v) + sizeof h, sizeof h);               \
    return h;                                                                                \
  }                                                                                          \
  MFT_TILE_INLINE float hsum(W v) { return hsum(lo_half(v) + hi_half(v)); }                 \
  MFT_TILE_INLINE float hmax(W v) {                                                          \
    const H a = lo_half(v), b = hi_half(v);                                                  \
    return hmax(a > b ? a : b);                                                              \
  }
MFT_TILE_HALVES(v8, v4)
MFT_TILE_HALVES(v16, v8)
#undef MFT_TILE_HALVES

// exp(x) for x <= 0 (lanes below -87 give exactly 0, so -inf masks work):
// x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor for e^r (rel. error ~1e-7),
// 2^n from the exponent bits. Round-to-nearest by the 1.5 * 2^23 trick.
template <class V>
MFT_TILE_INLINE V vexp_nonpos(V x) {
  typedef int32_t I __attribute__((vector_size(sizeof(V))));
  const V lo = splat<V>(-87.0f);
  const V xc = x < lo ? lo : x;
  const V magic = splat<V>(12582912.0f);
  const V n = (xc * 1.44269504f + magic) - magic;
  const V r = (xc - n * 0.693145752f) - n * 1.42860677e-6f;
  V p = splat<V>(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I bits = (__builtin_convertvector(n, I) + 127) << 23;
  V two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < lo ? V{} : p * two_n;
}

// C[0..MR)[0..NV*W) (+)= sum_{p<k} A(r, p) * B[p][.], B row stride ldb.
template <class V, int MR, int NV, bool ACOL>
MFT_TILE_INLINE void micro(const float *__restrict__ a, int64_t lda, const float *__restrict__ b, int64_t ldb,
                           float *__restrict__ c, int64_t ldc, int64_t k, bool accumulate) {
  constexpr int W = lanes<V>;
  V x[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) x[r][j] = accumulate ? vload<V>(c + r * ldc + j * W) : V{};
  for (int64_t p = 0; p < k; ++p) {
    const float *bp = b + p * ldb;
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = vload<V>(bp + j * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const float s = ACOL ? a[p * lda + r] : a[r * lda + p];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) x[r][j] += s * bv[j];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) vstore<V>(c + r * ldc + j * W, x[r][j]);
}

// Rows [0, m) in blocks of MR, then one block of the remaining m % MR rows.
template <class V, int MR, int NV, bool ACOL>
MFT_TILE_INLINE void row_blocks(const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                                int64_t m, int64_t k, bool accumulate) {
  const int64_t am = ACOL ? 1 : lda;  // step of A between rows
  int64_t i = 0;
  for (; i + MR <= m; i += MR) micro<V, MR, NV, ACOL>(a + i * am, lda, b, ldb, c + i * ldc, ldc, k, accumulate);
  if constexpr (MR > 1) {
    if (i < m)
      row_blocks<V, MR - 1, NV, ACOL>(a + i * am, lda, b, ldb, c + i * ldc, ldc, m - i, k, accumulate);
  }
}

// C (m x n, row stride ldc) = [C +] A (m x k) B (k x n, row stride ldb).
// A(r, p) = ACOL ? a[p * lda + r] : a[r * lda + p].
template <class V, int MR, bool ACOL>
MFT_TILE_INLINE void gemm(const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                          int64_t m, int64_t k, int64_t n, bool accumulate) {
  constexpr int W = lanes<V>;
  int64_t n0 = 0;
  for (; n0 + 2 * W <= n; n0 += 2 * W)
    row_blocks<V, MR, 2, ACOL>(a, lda, b + n0, ldb, c + n0, ldc, m, k, accumulate);
  for (; n0 + W <= n; n0 += W) row_blocks<V, MR, 1, ACOL>(a, lda, b + n0, ldb, c + n0, ldc, m, k, accumulate);
  for (; n0 < n; ++n0)  // fewer than W columns left (head dims that are not a multiple of W)
    for (int64_t i = 0; i < m; ++i) {
      float t = accumulate ? c[i * ldc + n0] : 0.f;
      for (int64_t p = 0; p < k; ++p) t += (ACOL ? a[p * lda + i] : a[i * lda + p]) * b[p * ldb + n0];
      c[i * ldc + n0] = t;
    }
}

}  // namespace mft::kernels::tile
