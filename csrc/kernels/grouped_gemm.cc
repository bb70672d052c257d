#include "kernels/grouped_gemm.h"
#include "kernels/isa.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

// Cache blocking around the register-blocked tile::gemm: an A block of
// kRowBlock x kDepthBlock floats (64 KB) stays in L2 while the B panel for a
// column strip (kDepthBlock x 2 vectors) stays in L1.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kDepthBlock = 256;

// C (m x n) = A (m x k) B (k x n); A(r, p) = ACOL ? a[p * lda + r] : a[r * lda + p].
// Depth blocks are summed in increasing order, so the result is the same for any caller split.
template <class V, int MR, bool ACOL>
MFT_TILE_INLINE void blocked_gemm(const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc, int64_t m,
                         int64_t k, int64_t n) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
    return;
  }
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t mb = std::min(kRowBlock, m - i0);
    for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
      const int64_t kb = std::min(kDepthBlock, k - p0);
      const float *ab = ACOL ? a + p0 * lda + i0 : a + i0 * lda + p0;
      tile::gemm<V, MR, ACOL>(ab, lda, b + p0 * ldb, ldb, c + i0 * ldc, ldc, mb, kb, n, p0 > 0);
    }
  }
}

struct Groups {
  std::vector<int64_t> start;  // first row of each expert
  explicit Groups(const int32_t *counts, int64_t experts) : start(experts + 1, 0) {
    for (int64_t e = 0; e < experts; ++e) start[e + 1] = start[e] + counts[e];
  }
  int64_t rows(int64_t e) const { return start[e + 1] - start[e]; }
};

// y_e = x_e W_e^T for experts [e0, e1). W_e^T is packed once per expert so B rows are contiguous.
template <class V, int MR>
MFT_TILE_INLINE void forward_experts(const float *x, const float *w, const Groups &g, float *y, int64_t e0, int64_t e1,
                            int64_t kin, int64_t out, float *wt) {
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t m = g.rows(e);
    if (m == 0) continue;
    const float *we = w + e * out * kin;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t p = 0; p < kin; ++p) wt[p * out + o] = we[o * kin + p];
    blocked_gemm<V, MR, false>(x + g.start[e] * kin, kin, wt, out, y + g.start[e] * out, out, m, kin, out);
  }
}

// dx_e = dy_e W_e and dW_e = dy_e^T x_e for experts [e0, e1).
template <class V, int MR>
MFT_TILE_INLINE void backward_experts(const float *dy, const float *x, const float *w, const Groups &g, float *dx, float *dw,
                             int64_t e0, int64_t e1, int64_t kin, int64_t out) {
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t m = g.rows(e);
    const float *dye = dy + g.start[e] * out;
    if (m > 0) blocked_gemm<V, MR, false>(dye, out, w + e * out * kin, kin, dx + g.start[e] * kin, kin, m, out, kin);
    blocked_gemm<V, MR, true>(dye, out, x + g.start[e] * kin, kin, dw + e * out * kin, kin, out, m, kin);
  }
}

// The bodies compiled per instruction set and chosen at run time, as in attention.cc.
#define MFT_GG_FWD_ARGS                                                                                      \
  const float *x, const float *w, const Groups &g, float *y, int64_t e0, int64_t e1, int64_t kin, int64_t out, \
      float *wt
#define MFT_GG_BWD_ARGS                                                                                    \
  const float *dy, const float *x, const float *w, const Groups &g, float *dx, float *dw, int64_t e0,      \
      int64_t e1, int64_t kin, int64_t out
using ForwardFn = void (*)(MFT_GG_FWD_ARGS);
using BackwardFn = void (*)(MFT_GG_BWD_ARGS);

void forward_generic(MFT_GG_FWD_ARGS) { forward_experts<tile::v4, 4>(x, w, g, y, e0, e1, kin, out, wt); }
void backward_generic(MFT_GG_BWD_ARGS) { backward_experts<tile::v4, 4>(dy, x, w, g, dx, dw, e0, e1, kin, out); }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void forward_avx2(MFT_GG_FWD_ARGS) {
  forward_experts<tile::v8, 6>(x, w, g, y, e0, e1, kin, out, wt);
}
__attribute__((target("avx2,fma"))) void backward_avx2(MFT_GG_BWD_ARGS) {
  backward_experts<tile::v8, 6>(dy, x, w, g, dx, dw, e0, e1, kin, out);
}
__attribute__((target("avx512f,avx2,fma"))) void forward_avx512(MFT_GG_FWD_ARGS) {
  forward_experts<tile::v16, 8>(x, w, g, y, e0, e1, kin, out, wt);
}
__attribute__((target("avx512f,avx2,fma"))) void backward_avx512(MFT_GG_BWD_ARGS) {
  backward_experts<tile::v16, 8>(dy, x, w, g, dx, dw, e0, e1, kin, out);
}
ForwardFn forward_fn() {
  const int l = isa_level();
  return l == 2 ? forward_avx512 : l == 1 ? forward_avx2 : forward_generic;
}
BackwardFn backward_fn() {
  const int l = isa_level();
  return l == 2 ? backward_avx512 : l == 1 ? backward_avx2 : backward_generic;
}
#else
ForwardFn forward_fn() { return forward_generic; }
BackwardFn backward_fn() { return backward_generic; }
#endif

}  // namespace

std::string check_grouped_gemm_args(const int32_t *counts, int64_t experts, int64_t rows) {
  if (experts <= 0) return "experts must be positive";
  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    if (counts[e] < 0) return "tokens_per_expert must be non-negative";
    total += counts[e];
  }
  if (total != rows) return "tokens_per_expert must sum to the number of rows";
  return "";
}

void grouped_gemm_forward(const float *x, const float *w, const int32_t *counts, float *y, int64_t experts,
                          int64_t rows, int64_t in_features, int64_t out_features) {
  const Groups g(counts, experts);
  const int threads = plan_threads(experts, rows / experts * in_features * out_features / 64 + 1);
  std::vector<std::vector<float>> packed(threads, std::vector<float>(in_features * out_features));
  const ForwardFn fn = forward_fn();
  parallel_rows(experts, threads, [&](int64_t e0, int64_t e1, int t) {
    fn(x, w, g, y, e0, e1, in_features, out_features, packed[t].data());
  });
}

void grouped_gemm_backward(const float *dy, const float *x, const float *w, const int32_t *counts, float *dx,
                           float *dw, int64_t experts, int64_t rows, int64_t in_features, int64_t out_features) {
  const Groups g(counts, experts);
  const int threads = plan_threads(experts, rows / experts * in_features * out_features / 64 + 1);
  const BackwardFn fn = backward_fn();
  parallel_rows(experts, threads, [&](int64_t e0, int64_t e1, int) {
    fn(dy, x, w, g, dx, dw, e0, e1, in_features, out_features);
  });
}

}  // namespace mft::kernels
