// Checks MLA decode attention over the paged latent cache (absorbed form) against a naive
// double-precision loop over the gathered context: random shuffled block tables in a shared pool,
// ragged lengths, block sizes 1..64, latent / rope widths that are and are not multiples of the vector
// width, head counts that fill and do not fill the kernel's groups of 4 rows, query chunks (causal
// inside the chunk, chunk rows from latent_new / rope_new), a layer slot offset, unread table entries
// out of range, and bit-identical results on 1, 2 and 3 threads (batch 1: heads split over threads).
// Also checks that bad tables/lengths are rejected. Exit status 0 = all passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/paged_mla.h"

namespace {

using mft::kernels::PagedMlaShape;

int g_failures = 0;

struct Case {
  PagedMlaShape s;
  std::vector<float> ql, qr, lat_new, rope_new, lat_pool, rope_pool;
  std::vector<int32_t> table, lens;
};

Case make_case(std::mt19937 &rng, int64_t batch, int64_t q_len, int64_t heads, int64_t rank, int64_t rope_dim,
               int64_t block_size, int64_t max_ctx, int64_t layers) {
  Case c;
  auto &s = c.s;
  s.batch = batch, s.q_len = q_len, s.heads = heads, s.rank = rank, s.rope_dim = rope_dim, s.block_size = block_size;
  s.max_blocks = (max_ctx + block_size - 1) / block_size;
  const int64_t blocks_per_layer = batch * s.max_blocks + 3;
  s.pool_slots = layers * blocks_per_layer * block_size;
  s.slot_offset = (layers - 1) * blocks_per_layer * block_size;  // the last layer
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto fill = [&](std::vector<float> &v, int64_t n, float amp) {
    v.resize(n);
    for (auto &x : v) x = amp * u(rng);
  };
  fill(c.ql, batch * heads * q_len * rank, 0.5f);
  fill(c.qr, batch * heads * q_len * rope_dim, 1.f);
  fill(c.lat_new, batch * q_len * rank, 1.f);
  fill(c.rope_new, batch * q_len * rope_dim, 1.f);
  fill(c.lat_pool, s.pool_slots * rank, 1.f);
  fill(c.rope_pool, s.pool_slots * rope_dim, 1.f);
  std::vector<int32_t> perm(blocks_per_layer);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  c.table.resize(batch * s.max_blocks);
  for (size_t i = 0; i < c.table.size(); ++i) c.table[i] = perm[i];
  std::uniform_int_distribution<int64_t> len(q_len, max_ctx);
  for (int64_t b = 0; b < batch; ++b) c.lens.push_back(static_cast<int32_t>(b == 0 ? max_ctx : len(rng)));
  // Blocks past a row's cached positions are never read: garbage there must not matter.
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = (c.lens[b] - q_len + block_size - 1) / block_size; j < s.max_blocks; ++j)
      c.table[b * s.max_blocks + j] = 1 << 30;
  return c;
}

std::vector<double> naive(const Case &c, double scale) {
  const auto &s = c.s;
  const int64_t R = s.rank, Dr = s.rope_dim;
  std::vector<double> out(s.batch * s.q_len * s.heads * R, 0.0);
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t first = c.lens[b] - s.q_len;
    auto slot = [&](int64_t p) {
      return s.slot_offset + c.table[b * s.max_blocks + p / s.block_size] * s.block_size + p % s.block_size;
    };
    auto lat = [&](int64_t p) { return p >= first ? &c.lat_new[(b * s.q_len + p - first) * R] : &c.lat_pool[slot(p) * R]; };
    auto rope = [&](int64_t p) {
      return p >= first ? &c.rope_new[(b * s.q_len + p - first) * Dr] : &c.rope_pool[slot(p) * Dr];
    };
    for (int64_t i = 0; i < s.q_len; ++i)
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t visible = first + i + 1;
        const float *ql = &c.ql[((b * s.heads + h) * s.q_len + i) * R];
        const float *qr = &c.qr[((b * s.heads + h) * s.q_len + i) * Dr];
        std::vector<double> sc(visible);
        double mx = -1e300;
        for (int64_t p = 0; p < visible; ++p) {
          double t = 0;
          for (int64_t x = 0; x < R; ++x) t += double(ql[x]) * lat(p)[x];
          for (int64_t x = 0; x < Dr; ++x) t += double(qr[x]) * rope(p)[x];
          sc[p] = t * scale;
          mx = std::max(mx, sc[p]);
        }
        double sum = 0;
        for (auto &x : sc) sum += (x = std::exp(x - mx));
        double *o = &out[((b * s.q_len + i) * s.heads + h) * R];
        for (int64_t p = 0; p < visible; ++p)
          for (int64_t x = 0; x < R; ++x) o[x] += sc[p] / sum * lat(p)[x];
      }
  }
  return out;
}

void run(const char *name, std::mt19937 &rng, int64_t batch, int64_t q_len, int64_t heads, int64_t rank,
         int64_t rope_dim, int64_t block_size, int64_t max_ctx, int64_t layers) {
  Case c = make_case(rng, batch, q_len, heads, rank, rope_dim, block_size, max_ctx, layers);
  const float scale = 1.f / std::sqrt(static_cast<float>(rope_dim + 16));
  const std::string err = mft::kernels::check_paged_mla_args(c.s, c.table.data(), c.lens.data());
  if (!err.empty()) {
    std::printf("FAIL %s: args rejected: %s\n", name, err.c_str());
    ++g_failures;
    return;
  }
  const size_t n = c.s.batch * c.s.q_len * c.s.heads * c.s.rank;
  std::vector<float> out[3] = {std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
  for (int t = 0; t < 3; ++t)
    mft::kernels::paged_mla_forward(c.ql.data(), c.qr.data(), c.lat_new.data(), c.rope_new.data(), c.lat_pool.data(),
                                    c.rope_pool.data(), c.table.data(), c.lens.data(), out[t].data(), c.s, scale,
                                    t + 1);
  const auto want = naive(c, scale);
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs(out[0][i] - want[i]));
    if (!(std::fabs(out[0][i] - want[i]) <= 2e-5 + 2e-4 * std::fabs(want[i])) && ++bad <= 5)
      std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", name, i, out[0][i], want[i]);
    if ((out[0][i] != out[1][i] || out[0][i] != out[2][i]) && ++bad <= 5)
      std::printf("FAIL %s[%zu]: 1 / 2 / 3 threads differ\n", name, i);
  }
  g_failures += bad;
  std::printf("%s %s (max abs error %.2e)\n", bad ? "FAIL" : "ok  ", name, worst);
}

void expect_rejected(const char *name, const Case &c) {
  if (mft::kernels::check_paged_mla_args(c.s, c.table.data(), c.lens.data()).empty()) {
    std::printf("FAIL %s: accepted\n", name);
    ++g_failures;
  } else {
    std::printf("ok   %s rejected\n", name);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(4321);
  run("decode fixture sizes r32 rope8 bs8", rng, 3, 1, 4, 32, 8, 8, 45, 2);
  run("decode r512 rope64 16 heads bs16", rng, 2, 1, 16, 512, 64, 16, 70, 1);
  run("decode r20 rope4 6 heads bs4", rng, 3, 1, 6, 20, 4, 4, 13, 2);
  run("decode 1 head bs1", rng, 2, 1, 1, 48, 8, 1, 9, 1);
  run("decode 3 heads bs64 (rows < 4)", rng, 2, 1, 3, 64, 16, 64, 150, 2);
  run("chunk q_len 5 bs8", rng, 3, 5, 4, 32, 8, 8, 45, 2);
  run("chunk q_len 3 = whole context bs2", rng, 1, 3, 2, 16, 8, 2, 3, 1);
  run("chunk q_len 7 5 heads bs32", rng, 2, 7, 5, 40, 8, 32, 80, 1);
  run("batch 1 big decode (heads split over threads)", rng, 1, 1, 16, 256, 32, 16, 400, 1);
  run("big decode (rows over threads)", rng, 6, 1, 8, 128, 32, 16, 300, 1);
  std::mt19937 r2(9);
  Case c = make_case(r2, 2, 1, 4, 16, 8, 8, 20, 1);
  Case bad = c;
  bad.table[1] = static_cast<int32_t>(c.s.pool_slots / c.s.block_size);  // read: row 0 has 19 cached positions
  bad.lens[0] = 20;
  expect_rejected("block outside the pool", bad);
  bad = c;
  bad.lens[1] = 25;
  expect_rejected("length over the table", bad);
  bad = c;
  bad.lens[1] = 0;
  expect_rejected("length below q_len", bad);
  bad = c;
  bad.s.block_size = 6;
  expect_rejected("block size not a power of two", bad);
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
