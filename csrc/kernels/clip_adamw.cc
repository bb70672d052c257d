#include "kernels/clip_adamw.h"

#include <algorithm>
#include <cmath>

#include "kernels/isa.h"

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

#define MFT_UPDATE_ARGS const AdamWTensor &t, float scale, float b1, float b2, float lr_c, float eps_t, float decay
#define MFT_UPDATE_CALL t, scale, b1, b2, lr_c, eps_t, decay

using SumFn = double (*)(const float *, int64_t);
using UpdateFn = void (*)(MFT_UPDATE_ARGS);

double sum_generic(const float *x, int64_t n) { return sum_squares_body(x, n); }
void update_generic(MFT_UPDATE_ARGS) { update_body(MFT_UPDATE_CALL); }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) double sum_avx2(const float *x, int64_t n) { return sum_squares_body(x, n); }
__attribute__((target("avx2"))) void update_avx2(MFT_UPDATE_ARGS) { update_body(MFT_UPDATE_CALL); }
__attribute__((target("avx512f,avx2"))) double sum_avx512(const float *x, int64_t n) { return sum_squares_body(x, n); }
__attribute__((target("avx512f,avx2"))) void update_avx512(MFT_UPDATE_ARGS) { update_body(MFT_UPDATE_CALL); }
SumFn sum_fn() {
  const int l = isa_level();
  return l == 2 ? sum_avx512 : l == 1 ? sum_avx2 : sum_generic;
}
UpdateFn update_fn() {
  const int l = isa_level();
  return l == 2 ? update_avx512 : l == 1 ? update_avx2 : update_generic;
}
#else
SumFn sum_fn() { return sum_generic; }
UpdateFn update_fn() { return update_generic; }
#endif

}  // namespace

double gradient_sum_squares(const AdamWTensor *tensors, int n) {
  const SumFn sum = sum_fn();
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
  const UpdateFn update = update_fn();
  for (int i = 0; i < n; ++i) {
    const AdamWTensor &ti = tensors[i];
    update(ti, scale, h.beta1, h.beta2, (h.lr * c) * ti.lr_scale, eps_t, ti.weight_decay / c);
  }
  return norm;
}

}  // namespace mft::kernels
