// Quantized matmul kernels vs a naive dequantize-then-matmul double loop, for
// decode (M = 1, 2) and prefill (M = 5) shapes, row counts that are not a
// multiple of the 4-row block, and int8 K that is not a multiple of 8.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/quant_matmul.h"
#include "kernels/quant_matmul_w8a8.h"

namespace {

int failures = 0;

void expect_close(const std::vector<float> &got, const std::vector<float> &want, const char *what, int64_t m,
                  int64_t n, int64_t k) {
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double tol = 1e-4 * (1.0 + std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]) / tol);
  }
  if (worst > 1.0) {
    std::printf("FAIL %s m=%lld n=%lld k=%lld: error %.2fx tolerance\n", what, (long long)m, (long long)n,
                (long long)k, worst);
    ++failures;
  }
}

void test_int8(int64_t m, int64_t n, int64_t k, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_int_distribution<int> qi(-127, 127);
  std::vector<float> x(m * k), scale(n), y(m * n), ref(m * n, 0.f);
  std::vector<int8_t> w(n * k);
  for (auto &v : x) v = u(rng);
  for (auto &v : w) v = static_cast<int8_t>(qi(rng));
  for (auto &v : scale) v = 0.01f + 0.01f * std::fabs(u(rng));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < k; ++c) s += double(x[i * k + c]) * (double(w[j * k + c]) * scale[j]);
      ref[i * n + j] = static_cast<float>(s);
    }
  mft::kernels::quant_matmul_int8(x.data(), w.data(), scale.data(), y.data(), m, n, k);
  expect_close(y, ref, "int8", m, n, k);
}

void test_int4(int64_t m, int64_t n, int64_t k, int64_t group, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_int_distribution<int> qi(0, 15);
  const int64_t groups = k / group;
  std::vector<float> x(m * k), scales(n * groups), zeros(n * groups), y(m * n), ref(m * n);
  std::vector<uint8_t> q(n * k), packed(n * k / 2);
  for (auto &v : x) v = u(rng);
  for (auto &v : q) v = static_cast<uint8_t>(qi(rng));
  for (auto &v : scales) v = 0.01f + 0.01f * std::fabs(u(rng));
  for (auto &v : zeros) v = static_cast<float>(qi(rng));
  // 16-column runs: byte j = q[k0 + j] | q[k0 + 8 + j] << 4
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = 0; r < k / 16; ++r)
      for (int b = 0; b < 8; ++b)
        packed[j * (k / 2) + r * 8 + b] =
            static_cast<uint8_t>(q[j * k + r * 16 + b] | (q[j * k + r * 16 + 8 + b] << 4));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const int64_t g = j * groups + c / group;
        s += double(x[i * k + c]) * ((double(q[j * k + c]) - zeros[g]) * scales[g]);
      }
      ref[i * n + j] = static_cast<float>(s);
    }
  mft::kernels::quant_matmul_int4(x.data(), packed.data(), scales.data(), zeros.data(), y.data(), m, n, k, group);
  expect_close(y, ref, "int4", m, n, k);
}

// W8A8: the int8 GEMM must equal an exact int64 double loop (weights over the whole
// int8 range, K not a multiple of the 64/32-byte vector), and the per-token
// quantization must be round-half-even of x / (max|x| / 127).
void test_w8a8(int64_t m, int64_t n, int64_t k, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_int_distribution<int> qi(-128, 127);
  std::vector<float> x(m * k), scale(n), y(m * n), xs(m);
  std::vector<int8_t> w(n * k), q(m * k);
  for (auto &v : x) v = u(rng);
  for (int64_t c = 0; c < k; ++c) x[c] = 0.f;  // an all-zero token: scale 1, codes 0
  for (auto &v : w) v = static_cast<int8_t>(qi(rng));
  for (auto &v : scale) v = 0.01f + 0.01f * std::fabs(u(rng));
  mft::kernels::quantize_rows_int8(x.data(), q.data(), xs.data(), m, k);
  std::vector<int32_t> c(m * n);
  mft::kernels::int8_gemm_nt(q.data(), w.data(), c.data(), m, n, k);
  mft::kernels::w8a8_matmul(x.data(), w.data(), scale.data(), y.data(), m, n, k);
  int bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    float amax = 0.f;
    for (int64_t p = 0; p < k; ++p) amax = std::max(amax, std::fabs(x[i * k + p]));
    const float s = amax > 0.f ? amax / 127.f : 1.f;
    if (xs[i] != s) ++bad;
    for (int64_t p = 0; p < k; ++p) {
      const float r = std::nearbyint(std::min(127.f, std::max(-127.f, x[i * k + p] / s)));
      if (q[i * k + p] != static_cast<int8_t>(r)) ++bad;
    }
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += int64_t(q[i * k + p]) * int64_t(w[j * k + p]);
      if (c[i * n + j] != acc) ++bad;
      if (y[i * n + j] != (static_cast<float>(acc) * s) * scale[j]) ++bad;
    }
  }
  if (bad) {
    std::printf("FAIL w8a8 m=%lld n=%lld k=%lld: %d mismatches\n", (long long)m, (long long)n, (long long)k, bad);
    ++failures;
  }
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  for (int64_t m : {1, 2, 5}) {
    test_int8(m, 13, 37, rng);
    test_int8(m, 8, 256, rng);
    test_int4(m, 13, 64, 16, rng);
    test_int4(m, 9, 256, 128, rng);
    test_int4(m, 4, 96, 32, rng);
  }
  test_int8(1, 64, 2048, rng);  // big enough to split over MFT_KERNEL_THREADS
  test_int4(2, 64, 2048, 128, rng);
  test_int8(7, 70, 600, rng);        // prefill path: several weight panels and depth blocks
  test_int4(9, 72, 512, 128, rng);
  test_int4(3, 8, 272, 16, rng);
  for (int64_t m : {1, 2, 3, 5, 9}) {
    test_w8a8(m, 13, 37, rng);
    test_w8a8(m, 8, 256, rng);
    test_w8a8(m, 6, 100, rng);
  }
  test_w8a8(33, 70, 1000, rng);  // several panels and threads
  std::printf("%s (isa %s, w8a8 %s)\n", failures ? "FAILED" : "ok", mft::kernels::quant_matmul_isa(),
              mft::kernels::w8a8_isa());
  return failures ? 1 : 0;
}
