// Checks the SwiGLU kernels against double-precision formulas, with sizes
// that are not a multiple of the vector width, large |gate| (the sigmoid's
// saturated ends) and threads. Exit status 0 = all passed.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/swiglu.h"

namespace {

int g_failures = 0;

void expect_close(const char *what, double got, double want) {
  if (!(std::fabs(got - want) <= 1e-6 + 1e-5 * std::fabs(want))) {
    if (++g_failures <= 20) std::printf("FAIL %s: got %.9g want %.9g\n", what, got, want);
  }
}

void check_case(int64_t n, float spread, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> g(n), u(n), d(n), out(n), dg(n), du(n);
  for (int64_t i = 0; i < n; ++i) g[i] = spread * normal(rng), u[i] = normal(rng), d[i] = normal(rng);
  if (n > 2) g[0] = 120.f, g[1] = -120.f;  // saturated: sigmoid exactly 1 and 0
  mft::kernels::swiglu_forward(g.data(), u.data(), n, out.data());
  mft::kernels::swiglu_backward(d.data(), g.data(), u.data(), n, dg.data(), du.data());
  for (int64_t i = 0; i < n; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(g[i])));
    expect_close("forward", out[i], g[i] * s * u[i]);
    expect_close("dup", du[i], d[i] * g[i] * s);
    expect_close("dgate", dg[i], d[i] * u[i] * s * (1 + g[i] * (1 - s)));
  }
}

}  // namespace

int main() {
  check_case(1, 1.f, 1);
  check_case(37, 3.f, 2);
  check_case(100003, 8.f, 3);
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("swiglu: all passed\n");
  return 0;
}
