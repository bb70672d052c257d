#include "kernels/rms_norm.h"

#include <cmath>
#include <cstring>
#include <type_traits>
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

inline f32x4 load4(const float *p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float lane_sum(f32x4 a, f32x4 b) {
  const f32x4 v = a + b;
  return (v[0] + v[1]) + (v[2] + v[3]);
}

float sum_squares(const float *__restrict__ x, int64_t n) {
  f32x4 a0 = {0}, a1 = {0};
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    const f32x4 v0 = load4(x + i), v1 = load4(x + i + kLanes);
    a0 += v0 * v0;
    a1 += v1 * v1;
  }
  float s = lane_sum(a0, a1);
  for (; i < n; ++i) {
    s += x[i] * x[i];
  }
  return s;
}

// Returns sum_i dy_i * w_i * x_i and stores sum_i x_i^2 into *sumsq (one pass over x).
float dot_dy_w_x(const float *__restrict__ dy, const float *__restrict__ w, const float *__restrict__ x,
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
    d += dy[i] * w[i] * x[i];
    s += x[i] * x[i];
  }
  *sumsq = s;
  return d;
}

inline float rstd_of(float sumsq, int64_t hidden, float eps) {
  return 1.0f / std::sqrt(sumsq / static_cast<float>(hidden) + eps);
}

// fp32 view of one row: the row itself for float, a converted copy for fp16.
// Kernels do all arithmetic on fp32 rows; fp16 is converted in bulk (F16C).
template <typename T>
class RowIO {
 public:
  explicit RowIO(int64_t n) : buf_(std::is_same<T, float>::value ? 0 : static_cast<size_t>(n)) {}
  const float *load(const T *row, int64_t n) {
    if constexpr (std::is_same<T, float>::value) {
      (void)n;
      return row;
    } else {
      half_to_float_n(row, buf_.data(), n);
      return buf_.data();
    }
  }
  // Where to write an output row; call store() afterwards.
  float *out(T *row) {
    if constexpr (std::is_same<T, float>::value) {
      return row;
    } else {
      (void)row;
      return buf_.data();
    }
  }
  void store(T *row, int64_t n) {
    if constexpr (!std::is_same<T, float>::value) float_to_half_n(buf_.data(), row, n);
    (void)row;
    (void)n;
  }

 private:
  std::vector<float> buf_;
};

template <typename W>
std::vector<float> weight_as_float(const W *w, int64_t n) {
  std::vector<float> wf(static_cast<size_t>(n));
  if constexpr (std::is_same<W, float>::value) {
    std::memcpy(wf.data(), w, wf.size() * sizeof(float));
  } else {
    half_to_float_n(w, wf.data(), n);
  }
  return wf;
}

}  // namespace

template <typename X, typename W>
void rms_norm_forward(const X *x, const W *w, X *y, int64_t rows, int64_t hidden, float eps) {
  if (rows <= 0 || hidden <= 0) return;
  const std::vector<float> wf = weight_as_float(w, hidden);
  const float *__restrict__ wp = wf.data();
  parallel_rows(rows, plan_threads(rows, hidden), [&](int64_t begin, int64_t end, int) {
    RowIO<X> x_io(hidden), y_io(hidden);
    for (int64_t r = begin; r < end; ++r) {
      const float *__restrict__ xr = x_io.load(x + r * hidden, hidden);
      float *__restrict__ yr = y_io.out(y + r * hidden);
      const float rstd = rstd_of(sum_squares(xr, hidden), hidden, eps);
      for (int64_t i = 0; i < hidden; ++i) yr[i] = xr[i] * rstd * wp[i];
      y_io.store(y + r * hidden, hidden);
    }
  });
}

template <typename X, typename W>
void rms_norm_backward(const X *dy, const X *x, const W *w, X *dx, W *dw, int64_t rows,
                       int64_t hidden, float eps) {
  if (hidden <= 0) return;
  const size_t h = static_cast<size_t>(hidden);
  const std::vector<float> wf = weight_as_float(w, hidden);
  const float *__restrict__ wp = wf.data();
  const int n_threads = plan_threads(rows, hidden);
  // One fp32 dw accumulator per worker, summed in worker order at the end.
  std::vector<float> dw_acc(h * static_cast<size_t>(n_threads), 0.f);
  const float inv_h = 1.0f / static_cast<float>(hidden);
  if (rows > 0) {
    parallel_rows(rows, n_threads, [&](int64_t begin, int64_t end, int worker) {
      float *__restrict__ dwp = dw_acc.data() + h * static_cast<size_t>(worker);
      RowIO<X> x_io(hidden), dy_io(hidden), dx_io(hidden);
      for (int64_t r = begin; r < end; ++r) {
        // restrict: outputs never overlap inputs, which lets the loops vectorize.
        const float *__restrict__ xr = x_io.load(x + r * hidden, hidden);
        const float *__restrict__ dyr = dy_io.load(dy + r * hidden, hidden);
        float *__restrict__ dxr = dx_io.out(dx + r * hidden);
        float sumsq;
        const float dot = dot_dy_w_x(dyr, wp, xr, hidden, &sumsq);
        const float rstd = rstd_of(sumsq, hidden, eps);
        // d/dx_i of x_i*rstd*w_i summed against dy: rstd*(g_i - x_i*rstd^2*mean(g.x)), g = dy*w
        const float coef = rstd * rstd * dot * inv_h;
        for (int64_t i = 0; i < hidden; ++i) {
          dxr[i] = rstd * (dyr[i] * wp[i] - xr[i] * coef);
          dwp[i] += dyr[i] * xr[i] * rstd;
        }
        dx_io.store(dx + r * hidden, hidden);
      }
    });
  }
  for (size_t i = 1; i < static_cast<size_t>(n_threads); ++i) {
    for (size_t j = 0; j < h; ++j) dw_acc[j] += dw_acc[h * i + j];
  }
  if constexpr (std::is_same<W, float>::value) {
    std::memcpy(dw, dw_acc.data(), h * sizeof(float));
  } else {
    float_to_half_n(dw_acc.data(), dw, hidden);
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
