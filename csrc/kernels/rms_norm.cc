#include "kernels/rms_norm.h"

#include <cmath>
#include <vector>

#include "kernels/parallel.h"

namespace mft::kernels {
namespace {

// 8 independent partial sums: lets the compiler use SIMD lanes for a float
// reduction without -ffast-math (which would reassociate everything else too).
constexpr int kLanes = 8;

template <typename X>
float sum_squares(const X *x, int64_t n) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = to_float(x[i + j]);
      acc[j] += v * v;
    }
  }
  float s = 0.f;
  for (; i < n; ++i) {
    const float v = to_float(x[i]);
    s += v * v;
  }
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Returns sum_i dy_i * w_i * x_i and accumulates sum_i x_i^2 into *sumsq.
template <typename X, typename W>
float dot_dy_w_x(const X *dy, const W *w, const X *x, int64_t n, float *sumsq) {
  float acc[kLanes] = {0};
  float sq[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float xv = to_float(x[i + j]);
      acc[j] += to_float(dy[i + j]) * to_float(w[i + j]) * xv;
      sq[j] += xv * xv;
    }
  }
  float d = 0.f, s = 0.f;
  for (; i < n; ++i) {
    const float xv = to_float(x[i]);
    d += to_float(dy[i]) * to_float(w[i]) * xv;
    s += xv * xv;
  }
  for (int j = 0; j < kLanes; ++j) {
    d += acc[j];
    s += sq[j];
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
  const float *wp = wf.data();
  parallel_rows(rows, plan_threads(rows, hidden), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const X *xr = x + r * hidden;
      X *yr = y + r * hidden;
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
  const float *wp = wf.data();
  const int n_threads = plan_threads(rows, hidden);
  // One fp32 dw accumulator per worker, summed in worker order at the end.
  std::vector<float> dw_acc(h * static_cast<size_t>(n_threads), 0.f);
  const float inv_h = 1.0f / static_cast<float>(hidden);
  if (rows > 0) {
    parallel_rows(rows, n_threads, [&](int64_t begin, int64_t end, int worker) {
      float *dwp = dw_acc.data() + h * static_cast<size_t>(worker);
      for (int64_t r = begin; r < end; ++r) {
        const X *xr = x + r * hidden;
        const X *dyr = dy + r * hidden;
        X *dxr = dx + r * hidden;
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
