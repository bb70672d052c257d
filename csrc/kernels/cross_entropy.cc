#include "kernels/cross_entropy.h"

#include <cmath>
#include <limits>

#include "kernels/isa.h"
#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

using tile::hmax;
using tile::hsum;
using tile::lanes;
using tile::splat;
using tile::vexp_nonpos;
using tile::vload;
using tile::vstore;

// max and logsumexp of one row; the tail past the last full vector is padded with -inf.
template <class V>
MFT_TILE_INLINE float row_lse(const float *x, int64_t n) {
  constexpr int W = lanes<V>;
  const float ninf = -std::numeric_limits<float>::infinity();
  V mv = splat<V>(ninf);
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    const V v = vload<V>(x + j);
    mv = v > mv ? v : mv;
  }
  float tail[W];
  for (int k = 0; k < W; ++k) tail[k] = j + k < n ? x[j + k] : ninf;
  const V tv = vload<V>(tail);
  mv = tv > mv ? tv : mv;
  const float mx = hmax(mv);
  if (mx == ninf) return ninf;
  const V mxv = splat<V>(mx);
  V sv = V{};
  for (j = 0; j + W <= n; j += W) sv += vexp_nonpos(vload<V>(x + j) - mxv);
  sv += vexp_nonpos(tv - mxv);  // -inf padding lanes give exactly 0
  return mx + std::log(hsum(sv));
}

template <class V>
MFT_TILE_INLINE void row_grad(const float *x, float lse, float scale, int64_t n, float *dx) {
  constexpr int W = lanes<V>;
  const V lv = splat<V>(lse), sv = splat<V>(scale);
  int64_t j = 0;
  for (; j + W <= n; j += W) vstore(dx + j, vexp_nonpos(vload<V>(x + j) - lv) * sv);
  if (j < n) {
    float tail[W] = {};
    for (int k = 0; j + k < n; ++k) tail[k] = x[j + k];
    float out[W];
    vstore(out, vexp_nonpos(vload<V>(tail) - lv) * sv);
    for (int k = 0; j + k < n; ++k) dx[j + k] = out[k];
  }
}

#define MFT_ROW_LSE(V) row_lse<V>(x, n)
#define MFT_ROW_GRAD(V) row_grad<V>(x, lse, scale, n, dx)
MFT_ISA_DISPATCH(float, lse, (const float *x, int64_t n), MFT_ROW_LSE)
MFT_ISA_DISPATCH(void, grad, (const float *x, float lse, float scale, int64_t n, float *dx), MFT_ROW_GRAD)

int64_t count_valid(const int32_t *labels, int64_t rows, int32_t ignore_index) {
  int64_t c = 0;
  for (int64_t r = 0; r < rows; ++r) c += labels[r] != ignore_index;
  return c;
}

}  // namespace

int64_t cross_entropy_bad_label(const int32_t *labels, int64_t rows, int64_t vocab, int32_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] != ignore_index && (labels[r] < 0 || labels[r] >= vocab)) return r;
  }
  return -1;
}

void cross_entropy_forward(const float *logits, const int32_t *labels, int64_t rows, int64_t vocab,
                           int32_t ignore_index, float *loss, float *lse) {
  const auto f = lse_fn();
  parallel_rows(rows, plan_threads(rows, vocab), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) lse[r] = f(logits + r * vocab, vocab);
  });
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] != ignore_index) total += static_cast<double>(lse[r]) - logits[r * vocab + labels[r]];
  }
  const int64_t count = count_valid(labels, rows, ignore_index);
  *loss = count ? static_cast<float>(total / static_cast<double>(count)) : 0.0f;
}

void cross_entropy_backward(const float *logits, const int32_t *labels, const float *lse, float dloss,
                            int64_t rows, int64_t vocab, int32_t ignore_index, float *dlogits) {
  const auto g = grad_fn();
  const int64_t count = count_valid(labels, rows, ignore_index);
  const float scale = dloss / static_cast<float>(count ? count : 1);
  parallel_rows(rows, plan_threads(rows, vocab), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      float *dx = dlogits + r * vocab;
      if (labels[r] == ignore_index) {
        for (int64_t j = 0; j < vocab; ++j) dx[j] = 0.0f;
        continue;
      }
      g(logits + r * vocab, lse[r], scale, vocab, dx);
      dx[labels[r]] -= scale;
    }
  });
}

}  // namespace mft::kernels
