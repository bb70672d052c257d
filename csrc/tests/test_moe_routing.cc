// Checks the MoE routing and RoPE kernels against naive double-precision
// loops written from the documented semantics: gating (softmax / sigmoid,
// groups, bias, norm, scale) forward + logits gradient by central finite
// differences, permute / unpermute forward + backward, invalid ids / row
// maps, and rope forward + backward (adjoint identity) in both layouts.
// Run once single-threaded and once with MFT_KERNEL_THREADS=3.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/moe_routing.h"
#include "kernels/rope.h"

namespace {

namespace k = mft::kernels;
int g_failures = 0;

void expect_close(const char *what, size_t i, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    if (++g_failures <= 30) std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", what, i, got, want);
  }
}

void expect(bool ok, const char *what) {
  if (!ok && ++g_failures <= 30) std::printf("FAIL %s\n", what);
}

// Naive gating for one token in double: returns ids and weights.
void naive_gating(const float *lg, const float *bias, int64_t e, int64_t topk, const k::GatingConfig &c,
                  std::vector<int> *ids, std::vector<double> *w) {
  std::vector<double> s(e), choice(e);
  double mx = *std::max_element(lg, lg + e), sum = 0;
  for (int64_t i = 0; i < e; ++i) {
    s[i] = c.sigmoid ? 1 / (1 + std::exp(-double(lg[i]))) : std::exp(double(lg[i]) - mx);
    sum += s[i];
  }
  for (int64_t i = 0; i < e; ++i) {
    if (!c.sigmoid) s[i] /= sum;
    choice[i] = s[i] + (bias ? bias[i] : 0);
  }
  if (c.n_group > 1) {
    const int64_t size = e / c.n_group;
    std::vector<double> gs(c.n_group);
    for (int64_t g = 0; g < c.n_group; ++g) {
      std::vector<double> v(choice.begin() + g * size, choice.begin() + (g + 1) * size);
      std::sort(v.rbegin(), v.rend());
      gs[g] = c.sigmoid ? v[0] + v[1] : v[0];
    }
    std::vector<int> order(c.n_group);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return gs[a] > gs[b]; });
    for (int64_t r = c.topk_group; r < c.n_group; ++r)
      for (int64_t i = 0; i < size; ++i) choice[order[r] * size + i] = 0;
  }
  std::vector<int> order(e);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return choice[a] > choice[b]; });
  ids->assign(order.begin(), order.begin() + topk);
  w->assign(topk, 0);
  double tot = 0;
  for (int64_t j = 0; j < topk; ++j) tot += ((*w)[j] = s[(*ids)[j]]);
  for (int64_t j = 0; j < topk; ++j) (*w)[j] *= c.routed_scaling_factor / (c.norm_topk_prob ? tot : 1.0);
}

void gating_case(const char *name, int64_t t, int64_t e, int64_t topk, k::GatingConfig c, bool with_bias,
                 unsigned seed) {
  expect(k::check_gating_args(t, e, topk, c).empty(), name);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> lg(t * e), bias(e), w(t * topk), dw(t * topk), dl(t * e);
  for (auto &v : lg) v = normal(rng);
  for (auto &v : bias) v = 0.2f * normal(rng);
  for (auto &v : dw) v = normal(rng);
  const float *b = with_bias ? bias.data() : nullptr;
  std::vector<int32_t> ids(t * topk);
  k::moe_gating_forward(lg.data(), b, w.data(), ids.data(), t, e, topk, c);
  k::moe_gating_backward(dw.data(), lg.data(), ids.data(), dl.data(), t, e, topk, c);
  char what[96];
  for (int64_t r = 0; r < t; ++r) {
    std::vector<int> want_ids;
    std::vector<double> want_w;
    naive_gating(&lg[r * e], b, e, topk, c, &want_ids, &want_w);
    for (int64_t j = 0; j < topk; ++j) {
      std::snprintf(what, sizeof what, "%s ids", name);
      expect_close(what, r * topk + j, ids[r * topk + j], want_ids[j], 0, 0);
      std::snprintf(what, sizeof what, "%s weights", name);
      expect_close(what, r * topk + j, w[r * topk + j], want_w[j], 1e-6, 1e-5);
    }
    // dL/dlogit_i with the selection held fixed, by central differences in double.
    for (int64_t i = 0; i < e; ++i) {
      auto loss = [&](double delta) {
        std::vector<float> l2(lg.begin() + r * e, lg.begin() + (r + 1) * e);
        std::vector<double> s(e);
        double mx = -1e300, sum = 0;
        for (int64_t x = 0; x < e; ++x) mx = std::max(mx, double(l2[x]) + (x == i ? delta : 0));
        for (int64_t x = 0; x < e; ++x) {
          const double v = double(l2[x]) + (x == i ? delta : 0);
          s[x] = c.sigmoid ? 1 / (1 + std::exp(-v)) : std::exp(v - mx);
          sum += s[x];
        }
        double tot = 0, out = 0;
        for (int64_t j = 0; j < topk; ++j) tot += (c.sigmoid ? s[want_ids[j]] : s[want_ids[j]] / sum);
        for (int64_t j = 0; j < topk; ++j) {
          const double sj = c.sigmoid ? s[want_ids[j]] : s[want_ids[j]] / sum;
          out += dw[r * topk + j] * sj * c.routed_scaling_factor / (c.norm_topk_prob ? tot : 1.0);
        }
        return out;
      };
      const double h = 1e-5, fd = (loss(h) - loss(-h)) / (2 * h);
      std::snprintf(what, sizeof what, "%s dlogits", name);
      expect_close(what, r * e + i, dl[r * e + i], fd, 2e-5, 1e-3);
    }
  }
}

void permute_case(int64_t t, int64_t hdim, int64_t topk, int64_t e, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(t * hdim), w(t * topk), dout(t * hdim);
  std::vector<int32_t> ids(t * topk);
  for (auto &v : x) v = normal(rng);
  for (auto &v : w) v = normal(rng);
  for (auto &v : dout) v = normal(rng);
  for (int64_t r = 0; r < t; ++r) {  // k distinct experts per token
    std::vector<int32_t> perm(e);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::copy(perm.begin(), perm.begin() + topk, &ids[r * topk]);
  }
  expect(k::ids_in_range(ids.data(), t * topk, e), "ids in range");
  std::vector<float> xs(t * topk * hdim), out(t * hdim), dys(t * topk * hdim), dw(t * topk);
  std::vector<int32_t> row_map(t * topk), counts(e), inv(t * topk);
  k::moe_permute(x.data(), ids.data(), xs.data(), row_map.data(), counts.data(), t, hdim, topk, e);
  // Expected order: by expert, then by flat (token, slot) index.
  std::vector<int32_t> want(t * topk);
  std::iota(want.begin(), want.end(), 0);
  std::stable_sort(want.begin(), want.end(), [&](int a, int b) { return ids[a] < ids[b]; });
  for (int64_t r = 0; r < t * topk; ++r) {
    expect_close("row_map", r, row_map[r], want[r], 0, 0);
    for (int64_t i = 0; i < hdim; ++i) expect_close("x_sorted", r, xs[r * hdim + i], x[(want[r] / topk) * hdim + i], 0, 0);
  }
  for (int64_t ex = 0; ex < e; ++ex)
    expect_close("counts", ex, counts[ex], std::count(ids.begin(), ids.end(), ex), 0, 0);
  expect(k::invert_row_map(row_map.data(), t * topk, inv.data()), "invert valid row_map");
  // y = 2 * x_sorted + expert id: out[t] = sum_j w (2 x[t] + id).
  std::vector<float> y(xs.size());
  for (int64_t r = 0; r < t * topk; ++r)
    for (int64_t i = 0; i < hdim; ++i) y[r * hdim + i] = 2 * xs[r * hdim + i] + float(ids[row_map[r]]);
  k::moe_unpermute(y.data(), inv.data(), w.data(), out.data(), t, hdim, topk);
  k::moe_unpermute_backward(dout.data(), y.data(), row_map.data(), w.data(), dys.data(), dw.data(), t, hdim, topk);
  for (int64_t r = 0; r < t; ++r)
    for (int64_t i = 0; i < hdim; ++i) {
      double want_o = 0;
      for (int64_t j = 0; j < topk; ++j) want_o += double(w[r * topk + j]) * (2.0 * x[r * hdim + i] + ids[r * topk + j]);
      expect_close("unpermute", r * hdim + i, out[r * hdim + i], want_o, 1e-5, 1e-5);
    }
  for (int64_t r = 0; r < t * topk; ++r) {
    const int64_t src = row_map[r], tok = src / topk;
    double dot = 0;
    for (int64_t i = 0; i < hdim; ++i) {
      dot += double(y[r * hdim + i]) * dout[tok * hdim + i];
      expect_close("dy_sorted", r * hdim + i, dys[r * hdim + i], double(w[src]) * dout[tok * hdim + i], 1e-6, 1e-6);
    }
    expect_close("dweights", src, dw[src], dot, 1e-4, 1e-5);
  }
  // Corrupted inputs are detected, not followed.
  std::vector<int32_t> bad_ids = ids;
  bad_ids[0] = static_cast<int32_t>(e);
  expect(!k::ids_in_range(bad_ids.data(), t * topk, e), "id == E rejected");
  std::vector<int32_t> bad_map = row_map;
  if (bad_map.size() > 1) bad_map[1] = bad_map[0];
  expect(bad_map.size() < 2 || !k::invert_row_map(bad_map.data(), t * topk, inv.data()), "duplicate row rejected");
}

void rope_case(bool interleaved, int64_t cos_batch, unsigned seed) {
  const k::RopeShape s{2, 3, 5, 8, cos_batch};
  expect(k::check_rope_args(s).empty(), "rope args");
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t n = s.batch * s.heads * s.seq * s.dim, nc = s.cos_batch * s.seq * s.dim;
  std::vector<float> x(n), g(n), out(n), dx(n), c(nc), sn(nc);
  for (auto &v : x) v = normal(rng);
  for (auto &v : g) v = normal(rng);
  for (int64_t i = 0; i < nc; ++i) {
    const double th = normal(rng);
    c[i] = float(std::cos(th) * 1.3);
    sn[i] = float(std::sin(th) * 1.3);
  }
  k::rope_forward(x.data(), c.data(), sn.data(), out.data(), s, interleaved);
  k::rope_backward(g.data(), c.data(), sn.data(), dx.data(), s, interleaved);
  const int64_t h = s.dim / 2;
  double lhs = 0, rhs = 0;  // <rope(x), g> == <x, rope^T(g)>
  for (int64_t r = 0; r < s.batch * s.heads * s.seq; ++r) {
    const int64_t b = r / (s.heads * s.seq), pos = r % s.seq;
    const float *cr = &c[((s.cos_batch == 1 ? 0 : b) * s.seq + pos) * s.dim];
    const float *sr = &sn[((s.cos_batch == 1 ? 0 : b) * s.seq + pos) * s.dim];
    std::vector<double> xd(s.dim);
    for (int64_t j = 0; j < s.dim; ++j)  // de-interleave: (x0, x2, ..., x1, x3, ...)
      xd[j] = interleaved ? x[r * s.dim + (j < h ? 2 * j : 2 * (j - h) + 1)] : x[r * s.dim + j];
    for (int64_t j = 0; j < s.dim; ++j) {
      const double rot = j < h ? -xd[j + h] : xd[j - h];
      expect_close(interleaved ? "rope interleaved" : "rope half", r * s.dim + j, out[r * s.dim + j],
                   xd[j] * cr[j] + rot * sr[j], 1e-6, 1e-5);
      lhs += double(out[r * s.dim + j]) * g[r * s.dim + j];
      rhs += double(x[r * s.dim + j]) * dx[r * s.dim + j];
    }
  }
  expect_close("rope adjoint", 0, lhs, rhs, 1e-4, 1e-5);
  expect(!k::check_rope_args({1, 1, 1, 7, 1}).empty(), "odd head_dim rejected");
  expect(!k::check_rope_args({2, 1, 1, 8, 3}).empty(), "cos batch rejected");
}

}  // namespace

int main() {
  gating_case("softmax", 37, 8, 2, {false, 1, 1, false, 1.f}, false, 1);
  gating_case("softmax norm", 37, 16, 4, {false, 1, 1, true, 1.f}, false, 2);
  gating_case("softmax groups", 20, 16, 3, {false, 4, 2, false, 1.5f}, false, 3);
  gating_case("deepseek", 50, 32, 8, {true, 8, 4, true, 2.5f}, true, 4);
  gating_case("sigmoid", 20, 8, 2, {true, 1, 1, false, 1.f}, false, 5);
  expect(!k::check_gating_args(4, 12, 2, {false, 5, 1, false, 1.f}).empty(), "E % n_group rejected");
  expect(!k::check_gating_args(4, 16, 5, {true, 4, 1, false, 1.f}).empty(), "groups < k rejected");
  expect(!k::check_gating_args(4, 8, 9, {}).empty(), "k > E rejected");
  permute_case(33, 7, 2, 8, 6);
  permute_case(64, 16, 6, 16, 7);
  permute_case(1, 3, 1, 4, 8);
  rope_case(false, 1, 9);
  rope_case(true, 2, 10);
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("moe routing + rope: all checks passed\n");
  return 0;
}
