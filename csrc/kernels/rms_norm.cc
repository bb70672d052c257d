#include "kernels/rms_norm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/parallel.h"

namespace mft::kernels {
namespace {

// Reductions keep 8 independent fp32 partial sums in two 4-lane GCC/Clang
// vectors (the native SSE/NEON width): SIMD without -ffast-math (which would
// reassociate everything else too), and the same summation order on every
// CPU, so results are reproducible.
constexpr int kLanes = 4;
constexpr int kStep = 2 * kLanes;
typedef float f32x4 __attribute__((vector_size(kLanes * sizeof(float))));

template <typename T>
inline f32x4 load4(const T *p) {
  f32x4 v;
  for (int j = 0; j < kLanes; ++j) v[j] = to_float(p[j]);
  return v;
}
template <>
inline f32x4 load4<float>(const float *p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float lane_sum(f32x4 a, f32x4 b) {
  const f32x4 v = a + b;
  return (v[0] + v[1]) + (v[2] + v[3]);
}

template <typename X>
float sum_squares(const X *__restrict__ x, int64_t n) {
  f32x4 a0 = {0}, a1 = {0};
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    const f32x4 v0 = load4(x + i), v1 = load4(x + i + kLanes);
    a0 += v0 * v0;
    a1 += v1 * v1;
  }
  float s = lane_sum(a0, a1);
  for (; i < n; ++i) {
    const float v = to_float(x[i]);
    s += v * v;
  }
  return s;
}

// Returns sum_i dy_i * w_i * x_i and stores sum_i x_i^2 into *sumsq (one pass over x).
template <typename X>
float dot_dy_w_x(const X *__restrict__ dy, const float *__restrict__ w, const X *__restrict__ x,
                 int64_t n, float *sumsq) {
  f32x4 d0 = {0}, d1 = {0}, s0 = {0}, s1 = {0};
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    const f32x4 x0 = load4(x + i), x1 = load4(x + i + kLanes);
    d0 += load4(dy + i) * load4(w + i) * x0;
    d1 += load4(dy + i + kLanes) * load4(w + i + kLanes) * x1;
    s0 += x0 * x0;
    s1 += x1 * x1;
  }
  float d = lane_sum(d0, d1), s = lane_sum(s0, s1);
  for (; i < n; ++i) {
    const float xv = to_float(x[i]);
    d += to_float(dy[i]) * w[i] * xv;
    s += xv * xv;
  }
  *sumsq = s;
  return d;
}

inline float rstd_of(float sumsq, int64_t hidden, float eps) {
  return 1.0f / std::sqrt(sumsq / static_cast<float>(hidden) + eps);
}

}  // namespace

template <typename X, typename W>
void rms_norm_forward(const X *x, const W *w, X *y, int64_t rows, int64_t hidden, float eps) {
  if (rows <= 0 || hidden <= 0) return;
  // Weight once in fp32 so the inner loop does no conversions for fp16 weights.
  std::vector<float> wf(static_cast<size_t>(hidden));
  for (int64_t i = 0; i < hidden; ++i) wf[i] = to_float(w[i]);
  const float *__restrict__ wp = wf.data();
  parallel_rows(rows, plan_threads(rows, hidden), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const X *__restrict__ xr = x + r * hidden;
      X *__restrict__ yr = y + r * hidden;
      const float rstd = rstd_of(sum_squares(xr, hidden), hidden, eps);
      for (int64_t i = 0; i < hidden; ++i) yr[i] = from_float<X>(to_float(xr[i]) * rstd * wp[i]);
    }
  });
}

template <typename X, typename W>
void rms_norm_backward(const X *dy, const X *x, const W *w, X *dx, W *dw, int64_t rows,
                       int64_t hidden, float eps) {
  if (hidden <= 0) return;
  const size_t h = static_cast<size_t>(hidden);
  std::vector<float> wf(h);
  for (size_t i = 0; i < h; ++i) wf[i] = to_float(w[i]);
  const float *__restrict__ wp = wf.data();
  const int n_threads = plan_threads(rows, hidden);
  // One fp32 dw accumulator per worker, summed in worker order at the end.
  std::vector<float> dw_acc(h * static_cast<size_t>(n_threads), 0.f);
  const float inv_h = 1.0f / static_cast<float>(hidden);
  if (rows > 0) {
    parallel_rows(rows, n_threads, [&](int64_t begin, int64_t end, int worker) {
      float *__restrict__ dwp = dw_acc.data() + h * static_cast<size_t>(worker);
      for (int64_t r = begin; r < end; ++r) {
        // restrict: outputs never overlap inputs, which lets the loops vectorize.
        const X *__restrict__ xr = x + r * hidden;
        const X *__restrict__ dyr = dy + r * hidden;
        X *__restrict__ dxr = dx + r * hidden;
        float sumsq;
        const float dot = dot_dy_w_x(dyr, wp, xr, hidden, &sumsq);
        const float rstd = rstd_of(sumsq, hidden, eps);
        // d/dx_i of x_i*rstd*w_i summed against dy: rstd*(g_i - x_i*rstd^2*mean(g.x)), g = dy*w
        const float coef = rstd * rstd * dot * inv_h;
        for (int64_t i = 0; i < hidden; ++i) {
          const float xv = to_float(xr[i]);
          const float dyv = to_float(dyr[i]);
          dxr[i] = from_float<X>(rstd * (dyv * wp[i] - xv * coef));
          dwp[i] += dyv * xv * rstd;
        }
      }
    });
  }
  for (size_t i = 0; i < h; ++i) {
    float s = 0.f;
    for (int t = 0; t < n_threads; ++t) s += dw_acc[h * static_cast<size_t>(t) + i];
    dw[i] = from_float<W>(s);
  }
}

#define MFT_INSTANTIATE_RMS_NORM(X, W)                                                          \
  template void rms_norm_forward<X, W>(const X *, const W *, X *, int64_t, int64_t, float); \
  template void rms_norm_backward<X, W>(const X *, const X *, const W *, X *, W *, int64_t, \
                                        int64_t, float);
MFT_INSTANTIATE_RMS_NORM(float, float)
MFT_INSTANTIATE_RMS_NORM(float, Half)
MFT_INSTANTIATE_RMS_NORM(Half, float)
MFT_INSTANTIATE_RMS_NORM(Half, Half)
#undef MFT_INSTANTIATE_RMS_NORM

}  // namespace mft::kernels
