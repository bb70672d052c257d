// Checks paged decode attention against a naive double-precision loop over
// the gathered context: random block tables (shuffled, shared pool), GQA,
// ragged lengths that are not multiples of the block size, block sizes 1..32,
// head dims that are and are not multiples of the vector width, query chunks
// (q_len > 1, causal inside the chunk, its keys from k_new / v_new), a layer
// slot offset, unread table entries out of range, and identical
// results on 1 and 3 threads; the same over int8 pools with per-kv-head scales (kv8). Also checks that bad
// tables/lengths are rejected.
// Exit status 0 = all passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/paged_attention.h"

namespace {

using mft::kernels::PagedAttentionShape;

int g_failures = 0;

struct Case {
  PagedAttentionShape s;
  std::vector<float> q, k, v, k_new, v_new;  // q (B, H, Sq, D), k_new/v_new (B, KVH, Sq, D)
  std::vector<int32_t> table, lens;
};

Case make_case(std::mt19937 &rng, int64_t batch, int64_t q_len, int64_t heads, int64_t kv_heads, int64_t dim,
               int64_t block_size, int64_t max_ctx, int64_t layers) {
  Case c;
  auto &s = c.s;
  s.batch = batch, s.q_len = q_len, s.heads = heads, s.kv_heads = kv_heads, s.dim = dim, s.block_size = block_size;
  s.max_blocks = (max_ctx + block_size - 1) / block_size;
  const int64_t blocks_per_layer = batch * s.max_blocks + 3;
  s.pool_slots = layers * blocks_per_layer * block_size;
  s.slot_offset = (layers - 1) * blocks_per_layer * block_size;  // the last layer
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  c.q.resize(batch * q_len * heads * dim);
  c.k.resize(s.pool_slots * kv_heads * dim);
  c.v.resize(c.k.size());
  for (auto &x : c.q) x = 2.f * u(rng);
  for (auto &x : c.k) x = u(rng);
  for (auto &x : c.v) x = u(rng);
  c.k_new.resize(batch * kv_heads * q_len * dim);
  c.v_new.resize(c.k_new.size());
  for (auto &x : c.k_new) x = u(rng);
  for (auto &x : c.v_new) x = u(rng);
  std::vector<int32_t> perm(blocks_per_layer);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  c.table.resize(batch * s.max_blocks);
  for (size_t i = 0; i < c.table.size(); ++i) c.table[i] = perm[i];
  // Blocks past a row's cached positions are never read: garbage there must not matter.
  std::uniform_int_distribution<int64_t> len(q_len, max_ctx);
  for (int64_t b = 0; b < batch; ++b) c.lens.push_back(static_cast<int32_t>(b == 0 ? max_ctx : len(rng)));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = (c.lens[b] - q_len + block_size - 1) / block_size; j < s.max_blocks; ++j)
      c.table[b * s.max_blocks + j] = 1 << 30;
  return c;
}

std::vector<double> naive(const Case &c, double scale) {
  const auto &s = c.s;
  const int64_t rep = s.heads / s.kv_heads, D = s.dim;
  std::vector<double> out(c.q.size(), 0.0);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < s.q_len; ++i)
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t visible = c.lens[b] - s.q_len + i + 1, kh = h / rep;
        const float *qr = &c.q[((b * s.heads + h) * s.q_len + i) * D];
        std::vector<double> sc(visible);
        double mx = -1e300;
        const int64_t first = c.lens[b] - s.q_len;  // chunk positions come from k_new / v_new
        auto row = [&](const std::vector<float> &pool, const std::vector<float> &fresh, int64_t p) {
          if (p >= first) return &fresh[((b * s.kv_heads + kh) * s.q_len + p - first) * D];
          const int64_t slot =
              s.slot_offset + c.table[b * s.max_blocks + p / s.block_size] * s.block_size + p % s.block_size;
          return &pool[(slot * s.kv_heads + kh) * D];
        };
        for (int64_t p = 0; p < visible; ++p) {
          const float *kr = row(c.k, c.k_new, p);
          double t = 0;
          for (int64_t x = 0; x < D; ++x) t += double(qr[x]) * kr[x];
          sc[p] = t * scale;
          mx = std::max(mx, sc[p]);
        }
        double sum = 0;
        for (auto &x : sc) sum += (x = std::exp(x - mx));
        double *o = &out[((b * s.q_len + i) * s.heads + h) * D];
        for (int64_t p = 0; p < visible; ++p) {
          const float *vr = row(c.v, c.v_new, p);
          for (int64_t x = 0; x < D; ++x) o[x] += sc[p] / sum * vr[x];
        }
      }
  return out;
}

void run(const char *name, std::mt19937 &rng, int64_t batch, int64_t q_len, int64_t heads, int64_t kv_heads,
         int64_t dim, int64_t block_size, int64_t max_ctx, int64_t layers) {
  Case c = make_case(rng, batch, q_len, heads, kv_heads, dim, block_size, max_ctx, layers);
  const float scale = 1.f / std::sqrt(static_cast<float>(dim));
  const std::string err = mft::kernels::check_paged_attention_args(c.s, c.table.data(), c.lens.data());
  if (!err.empty()) {
    std::printf("FAIL %s: args rejected: %s\n", name, err.c_str());
    ++g_failures;
    return;
  }
  std::vector<float> out1(c.q.size()), out3(c.q.size());
  mft::kernels::paged_attention_forward(c.q.data(), c.k_new.data(), c.v_new.data(), c.k.data(), c.v.data(), c.table.data(), c.lens.data(),
                                        out1.data(), c.s, scale, 1);
  mft::kernels::paged_attention_forward(c.q.data(), c.k_new.data(), c.v_new.data(), c.k.data(), c.v.data(), c.table.data(), c.lens.data(),
                                        out3.data(), c.s, scale, 3);
  const auto want = naive(c, scale);
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(out1[i] - want[i]) <= 2e-5 + 2e-4 * std::fabs(want[i])) && ++bad <= 5)
      std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", name, i, out1[i], want[i]);
    if (out1[i] != out3[i] && ++bad <= 5) std::printf("FAIL %s[%zu]: 1 vs 3 threads differ\n", name, i);
  }
  g_failures += bad;
  std::printf("%s %s\n", bad ? "FAIL" : "ok  ", name);
}

// The int8 cache (kv8): pools rounded to int8 with one scale per kv head; the naive loop runs on the
// dequantized pools, the kernel on the int8 ones (d 20 / 7 leave vector tails).
void run_int8(const char *name, std::mt19937 &rng, int64_t batch, int64_t q_len, int64_t heads, int64_t kv_heads,
              int64_t dim, int64_t block_size, int64_t max_ctx) {
  Case c = make_case(rng, batch, q_len, heads, kv_heads, dim, block_size, max_ctx, 2);
  const float scale = 1.f / std::sqrt(static_cast<float>(dim));
  std::vector<float> ks(kv_heads, 0.f), vs(kv_heads, 0.f);
  const int64_t rows = c.s.pool_slots;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < kv_heads; ++h)
      for (int64_t x = 0; x < dim; ++x) {
        const int64_t i = (r * kv_heads + h) * dim + x;
        ks[h] = std::max(ks[h], std::fabs(c.k[i]) / 127.f * (h + 1));  // a different scale per head
        vs[h] = std::max(vs[h], std::fabs(c.v[i]) / 127.f);
      }
  std::vector<int8_t> k8(c.k.size()), v8(c.v.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < kv_heads; ++h)
      for (int64_t x = 0; x < dim; ++x) {
        const int64_t i = (r * kv_heads + h) * dim + x;
        k8[i] = static_cast<int8_t>(std::lround(std::clamp(c.k[i] / ks[h], -127.f, 127.f)));
        v8[i] = static_cast<int8_t>(std::lround(std::clamp(c.v[i] / vs[h], -127.f, 127.f)));
        c.k[i] = k8[i] * ks[h];
        c.v[i] = v8[i] * vs[h];
      }
  std::vector<float> out1(c.q.size()), out3(c.q.size());
  for (auto [out, threads] : {std::pair{&out1, 1}, std::pair{&out3, 3}})
    mft::kernels::paged_attention_forward_int8(c.q.data(), c.k_new.data(), c.v_new.data(), k8.data(), v8.data(),
                                               ks.data(), vs.data(), c.table.data(), c.lens.data(), out->data(), c.s,
                                               scale, threads);
  const auto want = naive(c, scale);
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(out1[i] - want[i]) <= 2e-5 + 2e-4 * std::fabs(want[i])) && ++bad <= 5)
      std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", name, i, out1[i], want[i]);
    if (out1[i] != out3[i] && ++bad <= 5) std::printf("FAIL %s[%zu]: 1 vs 3 threads differ\n", name, i);
  }
  g_failures += bad;
  std::printf("%s %s\n", bad ? "FAIL" : "ok  ", name);
}

void expect_rejected(const char *name, const Case &c) {
  if (mft::kernels::check_paged_attention_args(c.s, c.table.data(), c.lens.data()).empty()) {
    std::printf("FAIL %s: accepted\n", name);
    ++g_failures;
  } else {
    std::printf("ok   %s rejected\n", name);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  run("decode mha d64 bs16", rng, 3, 1, 4, 4, 64, 16, 70, 1);
  run("decode gqa d128 bs16 layer offset", rng, 4, 1, 8, 2, 128, 16, 300, 2);
  run("decode gqa d80 bs32", rng, 2, 1, 6, 3, 80, 32, 100, 1);
  run("decode mqa d20 bs1", rng, 2, 1, 4, 1, 20, 1, 9, 1);
  run("decode d7 bs4", rng, 3, 1, 2, 1, 7, 4, 13, 2);
  run("chunk q_len 5 gqa bs8", rng, 3, 5, 4, 2, 32, 8, 45, 2);
  run("chunk q_len 3 = whole context", rng, 1, 3, 2, 2, 16, 2, 3, 1);
  run("big decode (threads)", rng, 8, 1, 8, 2, 64, 16, 600, 1);
  run_int8("int8 decode gqa d64 bs16", rng, 3, 1, 8, 2, 64, 16, 90);
  run_int8("int8 chunk q_len 4 d20 bs8", rng, 2, 4, 4, 2, 20, 8, 37);
  run_int8("int8 big decode d7 bs4 (threads)", rng, 8, 1, 4, 1, 7, 4, 600);
  std::mt19937 r2(7);
  Case c = make_case(r2, 2, 1, 4, 2, 16, 8, 20, 1);
  Case bad = c;
  bad.table[1] = static_cast<int32_t>(c.s.pool_slots / c.s.block_size);  // read: row 0 has 19 cached positions
  bad.lens[0] = 20;
  expect_rejected("block outside the pool", bad);
  bad = c;
  bad.lens[1] = 25;
  expect_rejected("length over the table", bad);
  bad = c;
  bad.s.block_size = 6;
  expect_rejected("block size not a power of two", bad);
  bad = c;
  bad.s.heads = 3;
  expect_rejected("heads not a multiple of kv heads", bad);
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
