// Checks clip + AdamW over several tensors against a plain double-precision
// AdamW (clip by global norm, bias correction, decoupled decay), over three
// steps; also that non-finite gradients write nothing and that the norm's
// bits do not depend on how the tensors are split.
// Exit status 0 = all passed; failures print what differed.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/clip_adamw.h"

using mft::kernels::AdamWHyper;
using mft::kernels::AdamWTensor;

namespace {

int g_failures = 0;

void expect_close(const char *what, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    if (++g_failures <= 20) std::printf("FAIL %s: got %.9g want %.9g\n", what, got, want);
  }
}

struct State {
  std::vector<std::vector<float>> p, m, v, g;
  std::vector<float> lr_scale, wd;
};

State make_state(const std::vector<int64_t> &sizes, unsigned seed, float grad_std) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  State s;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> p(sizes[i]), g(sizes[i]);
    for (auto &x : p) x = normal(rng);
    for (auto &x : g) x = grad_std * normal(rng);
    s.p.push_back(p);
    s.g.push_back(g);
    s.m.emplace_back(sizes[i], 0.f);
    s.v.emplace_back(sizes[i], 0.f);
    s.lr_scale.push_back(i % 3 == 1 ? 0.5f : 1.f);
    s.wd.push_back(i % 2 == 0 ? 0.1f : 0.f);
  }
  return s;
}

std::vector<AdamWTensor> views(State &s) {
  std::vector<AdamWTensor> t;
  for (size_t i = 0; i < s.p.size(); ++i) {
    t.push_back({s.p[i].data(), s.m[i].data(), s.v[i].data(), s.g[i].data(), static_cast<int64_t>(s.p[i].size()),
                 s.lr_scale[i], s.wd[i]});
  }
  return t;
}

// The textbook update in double: returns the pre-clip norm.
double reference_step(std::vector<std::vector<double>> &p, std::vector<std::vector<double>> &m,
                      std::vector<std::vector<double>> &v, const State &s, const AdamWHyper &h) {
  double ss = 0;
  for (const auto &g : s.g) for (float x : g) ss += static_cast<double>(x) * x;
  const double norm = std::sqrt(ss);
  const double scale = h.max_norm > 0 ? std::min(1.0, h.max_norm / (norm + 1e-6)) : 1.0;
  const double bc1 = 1 - std::pow(static_cast<double>(h.beta1), h.step);
  const double bc2 = 1 - std::pow(static_cast<double>(h.beta2), h.step);
  for (size_t i = 0; i < p.size(); ++i) {
    const double lr = static_cast<double>(h.lr) * s.lr_scale[i];
    for (size_t j = 0; j < p[i].size(); ++j) {
      const double g = s.g[i][j] * scale;
      m[i][j] = h.beta1 * m[i][j] + (1 - h.beta1) * g;
      v[i][j] = h.beta2 * v[i][j] + (1 - h.beta2) * g * g;
      const double update = (m[i][j] / bc1) / (std::sqrt(v[i][j] / bc2) + h.eps);
      p[i][j] -= lr * (update + s.wd[i] * p[i][j]);
    }
  }
  return norm;
}

void check_against_reference(const char *name, float max_norm, float grad_std) {
  const std::vector<int64_t> sizes = {1, 15, 16, 17, 4095, 4096, 4097, 70001};
  State s = make_state(sizes, 7, grad_std);
  std::vector<std::vector<double>> p, m, v;
  for (const auto &x : s.p) {
    p.emplace_back(x.begin(), x.end());
    m.emplace_back(x.size(), 0.0);
    v.emplace_back(x.size(), 0.0);
  }
  std::vector<AdamWTensor> t = views(s);
  for (int step = 1; step <= 3; ++step) {
    const AdamWHyper h{1e-2f, 0.9f, 0.95f, 1e-8f, max_norm, step};
    const double want = reference_step(p, m, v, s, h);
    const float got = mft::kernels::clip_adamw_step(t.data(), static_cast<int>(t.size()), h);
    expect_close(name, got, want, 0, 1e-6);
  }
  for (size_t i = 0; i < p.size(); ++i) {
    for (size_t j = 0; j < p[i].size(); ++j) {
      expect_close(name, s.p[i][j], p[i][j], 1e-6, 1e-5);
      expect_close(name, s.m[i][j], m[i][j], 1e-9, 1e-5);
      expect_close(name, s.v[i][j], v[i][j], 1e-12, 1e-5);
    }
  }
}

void check_non_finite_writes_nothing() {
  State s = make_state({33, 5000}, 11, 1.f);
  s.g[1][4321] = std::numeric_limits<float>::infinity();
  const State before = s;
  std::vector<AdamWTensor> t = views(s);
  const float norm = mft::kernels::clip_adamw_step(t.data(), 2, {1e-2f, 0.9f, 0.95f, 1e-8f, 1.f, 1});
  if (std::isfinite(norm)) ++g_failures, std::printf("FAIL non-finite: norm %g is finite\n", norm);
  if (s.p != before.p || s.m != before.m || s.v != before.v) {
    ++g_failures;
    std::printf("FAIL non-finite: the update wrote parameters or moments\n");
  }
}

void check_norm_is_split_independent() {
  // The same numbers as one tensor or as the same blocks in several tensors give the same bits.
  State one = make_state({3 * 4096}, 5, 1.f);
  State three = make_state({4096, 4096, 4096}, 99, 1.f);
  for (int i = 0; i < 3; ++i) {
    three.g[i].assign(one.g[0].begin() + i * 4096, one.g[0].begin() + (i + 1) * 4096);
  }
  std::vector<AdamWTensor> a = views(one), b = views(three);
  const double sa = mft::kernels::gradient_sum_squares(a.data(), 1);
  const double sb = mft::kernels::gradient_sum_squares(b.data(), 3);
  if (sa != sb) ++g_failures, std::printf("FAIL split: %.17g vs %.17g\n", sa, sb);
}

}  // namespace

int main() {
  check_against_reference("clipped", 1.0f, 1.f);     // norm ~ 300: the clip scale applies
  check_against_reference("not clipped", 0.f, 1e-3f);  // max_norm 0 = no clipping
  check_against_reference("below threshold", 1e6f, 1.f);
  check_non_finite_writes_nothing();
  check_norm_is_split_independent();
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("clip_adamw: all passed\n");
  return 0;
}
