// Checks the RMSNorm kernels against a naive double-precision loop, for
// fp32 and fp16 I/O, odd hidden sizes and enough rows to use several threads.
// Exit status 0 = all passed; failures print what differed.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/half.h"
#include "kernels/rms_norm.h"

using mft::kernels::Half;
using mft::kernels::from_float;
using mft::kernels::to_float;

namespace {

int g_failures = 0;

void expect_close(const char *what, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    if (++g_failures <= 20) std::printf("FAIL %s: got %.9g want %.9g\n", what, got, want);
  }
}

// Naive reference in double: y, dx, dw for given (rounded) inputs.
void reference(const std::vector<double> &x, const std::vector<double> &w, const std::vector<double> &dy,
               int64_t rows, int64_t h, double eps, std::vector<double> *y, std::vector<double> *dx,
               std::vector<double> *dw) {
  y->assign(x.size(), 0);
  dx->assign(x.size(), 0);
  dw->assign(h, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0, dot = 0;
    for (int64_t i = 0; i < h; ++i) {
      ss += x[r * h + i] * x[r * h + i];
      dot += dy[r * h + i] * w[i] * x[r * h + i];
    }
    const double rstd = 1.0 / std::sqrt(ss / h + eps);
    for (int64_t i = 0; i < h; ++i) {
      const double xv = x[r * h + i], g = dy[r * h + i] * w[i];
      (*y)[r * h + i] = xv * rstd * w[i];
      (*dx)[r * h + i] = rstd * g - xv * rstd * rstd * rstd * dot / h;
      (*dw)[i] += dy[r * h + i] * xv * rstd;
    }
  }
}

// Output tolerance: fp32 math error, plus one fp16 rounding (2^-11 relative) for fp16 outputs.
template <typename T>
double rtol_of() { return std::is_same<T, Half>::value ? 2e-3 : 2e-5; }
template <typename T>
double atol_of() { return std::is_same<T, Half>::value ? 1e-3 : 2e-6; }

template <typename X, typename W>
void check_case(const char *name, int64_t rows, int64_t h, unsigned seed) {
  const double atol = atol_of<X>(), rtol = rtol_of<X>();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.5f, 1.5f);
  const size_t n = static_cast<size_t>(rows * h);
  std::vector<X> x(n), dy(n), y(n), dx(n);
  std::vector<W> w(h), dw(h);
  // Reference sees exactly the values the kernel sees (after fp16 rounding).
  std::vector<double> xd(n), dyd(n), wd(h);
  for (size_t i = 0; i < n; ++i) {
    x[i] = from_float<X>(normal(rng) * 3.f);
    dy[i] = from_float<X>(normal(rng));
    xd[i] = to_float(x[i]);
    dyd[i] = to_float(dy[i]);
  }
  for (int64_t i = 0; i < h; ++i) {
    w[i] = from_float<W>(uni(rng));
    wd[i] = to_float(w[i]);
  }
  const float eps = 1e-6f;
  mft::kernels::rms_norm_forward<X, W>(x.data(), w.data(), y.data(), rows, h, eps);
  mft::kernels::rms_norm_backward<X, W>(dy.data(), x.data(), w.data(), dx.data(), dw.data(), rows, h, eps);
  std::vector<double> yr, dxr, dwr;
  reference(xd, wd, dyd, rows, h, eps, &yr, &dxr, &dwr);
  char what[128];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(what, sizeof what, "%s y[%zu]", name, i);
    expect_close(what, to_float(y[i]), yr[i], atol, rtol);
    std::snprintf(what, sizeof what, "%s dx[%zu]", name, i);
    expect_close(what, to_float(dx[i]), dxr[i], atol, rtol);
  }
  // dw sums over all rows: tolerance grows with the number of terms.
  for (int64_t i = 0; i < h; ++i) {
    std::snprintf(what, sizeof what, "%s dw[%lld]", name, static_cast<long long>(i));
    expect_close(what, to_float(dw[i]), dwr[i], atol_of<W>() * std::sqrt(static_cast<double>(rows)), rtol_of<W>());
  }
}

void check_half_roundtrip() {
  // Every finite half converts to float and back unchanged.
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const Half h{static_cast<uint16_t>(b)};
    if (((b >> 10) & 0x1f) == 0x1f) continue;  // inf/nan
    const Half back = mft::kernels::float_to_half(mft::kernels::half_to_float(h));
    if (back.bits != h.bits && ++g_failures <= 20) std::printf("FAIL half roundtrip 0x%04x -> 0x%04x\n", b, back.bits);
  }
  // Bulk (F16C where available) and scalar conversions agree bit for bit.
  std::vector<Half> all(0x10000);
  for (uint32_t b = 0; b < 0x10000u; ++b) all[b].bits = static_cast<uint16_t>(b);
  std::vector<float> bulk(all.size());
  mft::kernels::half_to_float_n(all.data(), bulk.data(), static_cast<int64_t>(all.size()));
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> wide(-70000.f, 70000.f);
  std::vector<float> floats;
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = mft::kernels::half_to_float(all[b]);
    if (std::isnan(f)) continue;
    if (std::memcmp(&f, &bulk[b], sizeof f) != 0 && ++g_failures <= 20) std::printf("FAIL bulk half->float 0x%04x\n", b);
    floats.push_back(f);
    floats.push_back(f * 1.0001f);  // between halves: exercises rounding
    floats.push_back(wide(rng) * 1e-6f);
    floats.push_back(wide(rng));
  }
  std::vector<Half> back(floats.size());
  mft::kernels::float_to_half_n(floats.data(), back.data(), static_cast<int64_t>(floats.size()));
  for (size_t i = 0; i < floats.size(); ++i) {
    if (back[i].bits != mft::kernels::float_to_half(floats[i]).bits && ++g_failures <= 20) {
      std::printf("FAIL bulk float->half %.9g: 0x%04x vs 0x%04x\n", floats[i], back[i].bits,
                  mft::kernels::float_to_half(floats[i]).bits);
    }
  }
  // Known roundings: 1 + 2^-11 is a tie between 1 and 1+2^-10 -> even (1.0).
  expect_close("half tie-to-even", mft::kernels::half_to_float(mft::kernels::float_to_half(1.0f + 0x1p-11f)), 1.0, 0, 0);
  expect_close("half overflow", std::isinf(mft::kernels::half_to_float(mft::kernels::float_to_half(70000.f))), 1, 0, 0);
  expect_close("half smallest subnormal", mft::kernels::half_to_float(mft::kernels::float_to_half(0x1p-24f)), 0x1p-24, 0, 0);
}

}  // namespace

int main() {
  check_half_roundtrip();
  check_case<float, float>("f32 1x1", 1, 1, 1);
  check_case<float, float>("f32 3x5", 3, 5, 2);
  check_case<float, float>("f32 7x67", 7, 67, 3);
  check_case<float, float>("f32 600x256 (threads)", 600, 256, 4);
  check_case<float, Half>("f32/f16w 9x33", 9, 33, 5);
  check_case<Half, float>("f16/f32w 9x33", 9, 33, 6);
  check_case<Half, Half>("f16 300x260 (threads)", 300, 260, 7);
  if (g_failures) {
    std::printf("%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("rms_norm: all checks passed\n");
  return 0;
}
