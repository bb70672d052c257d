// Checks the MoE grouped GEMM against naive double-precision loops: forward,
// both backward outputs, empty experts, shapes that are not multiples of the
// vector width or of the cache blocks, and the argument check. Run on every
// instruction-set path and with several threads (CMakeLists).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/grouped_gemm.h"

namespace {

namespace k = mft::kernels;
int g_failures = 0;

void expect_close(const char *what, size_t i, double got, double want) {
  if (!(std::fabs(got - want) <= 1e-4 + 1e-4 * std::fabs(want))) {
    if (++g_failures <= 30) std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", what, i, got, want);
  }
}

void check_case(const std::vector<int32_t> &counts, int64_t kin, int64_t out, unsigned seed) {
  const int64_t e_n = static_cast<int64_t>(counts.size());
  int64_t n = 0;
  for (int32_t c : counts) n += c;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(n * kin), w(e_n * out * kin), dy(n * out);
  for (auto &v : x) v = dist(rng);
  for (auto &v : w) v = dist(rng);
  for (auto &v : dy) v = dist(rng);
  std::vector<float> y(n * out, NAN), dx(n * kin, NAN), dw(e_n * out * kin, NAN);
  k::grouped_gemm_forward(x.data(), w.data(), counts.data(), y.data(), e_n, n, kin, out);
  k::grouped_gemm_backward(dy.data(), x.data(), w.data(), counts.data(), dx.data(), dw.data(), e_n, n, kin, out);
  int64_t r0 = 0;
  for (int64_t e = 0; e < e_n; ++e) {
    const float *we = w.data() + e * out * kin;
    for (int64_t r = r0; r < r0 + counts[e]; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t p = 0; p < kin; ++p) s += double(x[r * kin + p]) * we[o * kin + p];
        expect_close("y", r * out + o, y[r * out + o], s);
      }
      for (int64_t p = 0; p < kin; ++p) {
        double s = 0;
        for (int64_t o = 0; o < out; ++o) s += double(dy[r * out + o]) * we[o * kin + p];
        expect_close("dx", r * kin + p, dx[r * kin + p], s);
      }
    }
    for (int64_t o = 0; o < out; ++o)
      for (int64_t p = 0; p < kin; ++p) {
        double s = 0;
        for (int64_t r = r0; r < r0 + counts[e]; ++r) s += double(dy[r * out + o]) * x[r * kin + p];
        expect_close("dw", (e * out + o) * kin + p, dw[(e * out + o) * kin + p], s);
      }
    r0 += counts[e];
  }
}

}  // namespace

int main() {
  check_case({3, 0, 5, 1}, 16, 8, 1);            // an empty expert; exact vector widths
  check_case({7, 9, 0, 13}, 37, 21, 2);          // odd sizes: scalar column tails, partial row blocks
  check_case({70, 1, 130}, 300, 40, 3);          // several row and depth cache blocks
  check_case({0, 0}, 8, 8, 4);                   // no rows at all: dw must be zero
  const std::vector<int32_t> bad = {2, -1};
  if (k::check_grouped_gemm_args(bad.data(), 2, 1).empty() && ++g_failures) std::printf("FAIL negative count accepted\n");
  const std::vector<int32_t> short_sum = {2, 2};
  if (k::check_grouped_gemm_args(short_sum.data(), 2, 5).empty() && ++g_failures) std::printf("FAIL wrong sum accepted\n");
  if (g_failures) {
    std::printf("%d failures\n", g_failures);
    return 1;
  }
  std::printf("grouped gemm: ok\n");
  return 0;
}
