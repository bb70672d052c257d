#include "kernels/clip_adamw.h"

#include <algorithm>
#include <cmath>

#include "kernels/isa.h"
#include "kernels/tile_gemm.h"

// Compiled with -ffp-contract=off (CMakeLists.txt): no fused multiply-adds,
// so the AVX-512, AVX2 and portable paths give identical bits.

namespace mft::kernels {
namespace {

constexpr int64_t kBlock = 4096;
constexpr int kLanes = 16;

inline __attribute__((always_inline)) double sum_squares_body(const float *x, int64_t n) {
  double total = 0.0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    float lane[kLanes] = {};
    int64_t i = b;
    for (; i + kLanes <= e; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) lane[j] += x[i + j] * x[i + j];
    }
    double s = 0.0;
    for (int j = 0; j < kLanes; ++j) s += lane[j];
    for (; i < e; ++i) s += static_cast<double>(x[i]) * x[i];
    total += s;
  }
  return total;
}

// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr_c (m / (sqrt(v) + eps_t) + decay p)
// with g = grad * scale, lr_c = lr * lr_scale * c, decay = wd / c (bias correction folded in:
// c = sqrt(1 - b2^t) / (1 - b1^t), eps_t = eps sqrt(1 - b2^t)), as mft's composed AdamW.
inline __attribute__((always_inline)) void update_body(const AdamWTensor &t, float scale, float b1, float b2,
                                                       float lr_c, float eps_t, float decay) {
  const float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
  float *__restrict p = t.param;
  float *__restrict m = t.exp_avg;
  float *__restrict v = t.exp_avg_sq;
  const float *__restrict g = t.grad;
  for (int64_t i = 0; i < t.size; ++i) {
    const float gi = g[i] * scale;
    const float mi = b1 * m[i] + ob1 * gi;
    const float vi = b2 * v[i] + ob2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] - lr_c * (mi / (std::sqrt(vi) + eps_t) + decay * p[i]);
  }
}

// The bodies auto-vectorise; the vector type only picks the instruction set they are compiled for.
#define MFT_SUM_SQUARES(V) sum_squares_body(x, n)
#define MFT_UPDATE(V) update_body(t, scale, b1, b2, lr_c, eps_t, decay)
MFT_ISA_DISPATCH(double, sum, (const float *x, int64_t n), MFT_SUM_SQUARES)
MFT_ISA_DISPATCH(void, update,
                 (const AdamWTensor &t, float scale, float b1, float b2, float lr_c, float eps_t, float decay),
                 MFT_UPDATE)

}  // namespace

double gradient_sum_squares(const AdamWTensor *tensors, int n) {
  const auto sum = sum_fn();
  double total = 0.0;
  for (int i = 0; i < n; ++i) total += sum(tensors[i].grad, tensors[i].size);
  return total;
}

float clip_adamw_step(const AdamWTensor *tensors, int n, const AdamWHyper &h) {
  const float norm = static_cast<float>(std::sqrt(gradient_sum_squares(tensors, n)));
  if (!std::isfinite(norm)) return norm;
  const float scale = h.max_norm > 0.0f ? std::min(1.0f, h.max_norm / (norm + 1e-6f)) : 1.0f;
  const float t = static_cast<float>(h.step);
  const float root2 = std::sqrt(1.0f - std::pow(h.beta2, t));
  const float c = root2 / (1.0f - std::pow(h.beta1, t));
  const float eps_t = h.eps * root2;
  const auto update = update_fn();
  for (int i = 0; i < n; ++i) {
    const AdamWTensor &ti = tensors[i];
    update(ti, scale, h.beta1, h.beta2, (h.lr * c) * ti.lr_scale, eps_t, ti.weight_decay / c);
  }
  return norm;
}

}  // namespace mft::kernels
