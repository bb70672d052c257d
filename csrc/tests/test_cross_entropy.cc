// Checks the fused cross-entropy against a double-precision log-softmax:
// the mean loss, each row's logsumexp and the gradient, with ignored rows,
// vocabularies that are not a multiple of the vector width, large logits,
// and threads; plus the bad-label check.
// Exit status 0 = all passed; failures print what differed.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cross_entropy.h"

namespace {

int g_failures = 0;

void expect_close(const char *what, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    if (++g_failures <= 20) std::printf("FAIL %s: got %.9g want %.9g\n", what, got, want);
  }
}

void check_case(const char *name, int64_t rows, int64_t vocab, float spread, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, spread);
  std::vector<float> x(rows * vocab);
  for (auto &v : x) v = normal(rng);
  std::vector<int32_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r) labels[r] = r % 5 == 3 ? -100 : static_cast<int32_t>(rng() % vocab);
  float loss = 0;
  std::vector<float> lse(rows), dx(rows * vocab);
  mft::kernels::cross_entropy_forward(x.data(), labels.data(), rows, vocab, -100, &loss, lse.data());
  const float dloss = 0.75f;
  mft::kernels::cross_entropy_backward(x.data(), labels.data(), lse.data(), dloss, rows, vocab, -100, dx.data());
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) count += labels[r] != -100;
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x.data() + r * vocab;
    double mx = row[0];
    for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double s = 0;
    for (int64_t j = 0; j < vocab; ++j) s += std::exp(row[j] - mx);
    const double want_lse = mx + std::log(s);
    expect_close(name, lse[r], want_lse, 1e-5, 1e-6);
    if (labels[r] != -100) total += want_lse - row[labels[r]];
    for (int64_t j = 0; j < vocab; ++j) {
      double want = 0;
      if (labels[r] != -100) want = (std::exp(row[j] - want_lse) - (j == labels[r])) * dloss / count;
      expect_close(name, dx[r * vocab + j], want, 1e-7, 1e-5);
    }
  }
  expect_close(name, loss, total / count, 1e-6, 1e-6);
}

void check_all_ignored() {
  std::vector<float> x(3 * 7, 1.f), lse(3), dx(3 * 7, 5.f);
  std::vector<int32_t> labels(3, -100);
  float loss = 1;
  mft::kernels::cross_entropy_forward(x.data(), labels.data(), 3, 7, -100, &loss, lse.data());
  mft::kernels::cross_entropy_backward(x.data(), labels.data(), lse.data(), 1.f, 3, 7, -100, dx.data());
  expect_close("all ignored: loss", loss, 0, 0, 0);
  for (float v : dx) expect_close("all ignored: grad", v, 0, 0, 0);
}

void check_bad_label() {
  const std::vector<int32_t> labels = {0, 6, -100, 7, -1};
  if (mft::kernels::cross_entropy_bad_label(labels.data(), 5, 7, -100) != 3) {
    ++g_failures;
    std::printf("FAIL bad label: expected row 3\n");
  }
  if (mft::kernels::cross_entropy_bad_label(labels.data(), 3, 7, -100) != -1) {
    ++g_failures;
    std::printf("FAIL bad label: rows 0-2 are fine\n");
  }
}

}  // namespace

int main() {
  check_case("small vocab", 9, 7, 1.f, 1);
  check_case("vector tail", 13, 37, 2.f, 2);
  check_case("large logits", 6, 100, 30.f, 3);
  check_case("wide rows", 40, 1000, 3.f, 4);
  check_all_ignored();
  check_bad_label();
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("cross_entropy: all passed\n");
  return 0;
}
