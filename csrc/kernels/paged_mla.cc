#include "kernels/paged_mla.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/isa.h"
#include "kernels/online_softmax.h"
#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

#define MFT_MLA_INLINE static inline __attribute__((always_inline))

using tile::hmax;
using tile::hsum;
using tile::lanes;
using tile::online_softmax_step;
using tile::splat;
using tile::vload;
using tile::vstore;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Score rows are padded to a multiple of the widest vector (masked with -inf).
constexpr int64_t kPad = 16;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// a[j][u] += q_j . k_u over d numbers (vector body), s[j][u] the scalar tail, for NR query rows
// q_j = q + j * ldq and NK key rows k_u: each key load serves NR rows, each query load NK keys. A score's
// order of sums does not depend on NR / NK (lanes, then the tail), so neither does the result.
template <class V, int NR, int NK>
MFT_MLA_INLINE void dot_part(V (&a)[NR][NK], float (&s)[NR][NK], const float *q, int64_t ldq,
                             const float *const *keys, int64_t d) {
  constexpr int W = lanes<V>;
  const float *k[NK];
#pragma GCC unroll 4
  for (int u = 0; u < NK; ++u) k[u] = keys[u];
  int64_t x = 0;
  for (; x + W <= d; x += W) {
    V kv[NK];
#pragma GCC unroll 4
    for (int u = 0; u < NK; ++u) kv[u] = vload<V>(k[u] + x);
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const V qv = vload<V>(q + j * ldq + x);
#pragma GCC unroll 4
      for (int u = 0; u < NK; ++u) a[j][u] += qv * kv[u];
    }
  }
  for (; x < d; ++x)
    for (int j = 0; j < NR; ++j)
      for (int u = 0; u < NK; ++u) s[j][u] += q[j * ldq + x] * k[u][x];
}

// out[j * ostride + u] = q_j . [lat[u], rope[u]] for NR query rows (rank + rope_dim numbers each: the scaled
// absorbed query, then the scaled rope query) and NK keys.
template <class V, int NR, int NK>
MFT_MLA_INLINE void scores_block(const float *q, int64_t ldq, const float *const *lat, const float *const *rope,
                                 int64_t rank, int64_t rope_dim, float *out, int64_t ostride) {
  V a[NR][NK];
  float s[NR][NK];
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
    for (int u = 0; u < NK; ++u) a[j][u] = V{}, s[j][u] = 0.f;
  dot_part<V, NR, NK>(a, s, q, ldq, lat, rank);
  dot_part<V, NR, NK>(a, s, q + rank, ldq, rope, rope_dim);
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
    for (int u = 0; u < NK; ++u) out[j * ostride + u] = hsum(a[j][u]) + s[j][u];
}

// acc_j[x, rank) += sum_t p_j[t] * lat[t][x, rank) for NR rows (acc_j = acc + j * rank, p_j = p + j * pstride),
// t in increasing order, NV vectors at a time while they fit: each row's NV accumulator vectors stay in
// registers while the block's latent rows stream by (each latent load serves NR rows). Returns the first
// column not done. Per element the same order of sums for any NR / NV.
template <class V, int NR, int NV>
MFT_MLA_INLINE int64_t accumulate_cols(float *acc, const float *p, int64_t pstride, const float *const *lat,
                                       int64_t n, int64_t rank, int64_t x) {
  constexpr int W = lanes<V>;
  for (; x + NV * W <= rank; x += NV * W) {
    V c[NR][NV];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[j][v] = vload<V>(acc + j * rank + x + v * W);
    for (int64_t t = 0; t < n; ++t) {
      V lv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) lv[v] = vload<V>(lat[t] + x + v * W);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        const V pv = splat<V>(p[j * pstride + t]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[j][v] += pv * lv[v];
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) vstore<V>(acc + j * rank + x + v * W, c[j][v]);
  }
  return x;
}

// acc_j[0, rank) += sum_t p_j[t] * lat[t][0, rank): NV vectors, then one, then the scalar tail.
template <class V, int NR, int NV>
MFT_MLA_INLINE void accumulate_rows(float *acc, const float *p, int64_t pstride, const float *const *lat, int64_t n,
                                    int64_t rank) {
  int64_t x = accumulate_cols<V, NR, NV>(acc, p, pstride, lat, n, rank, 0);
  if constexpr (NV > 1) x = accumulate_cols<V, NR, 1>(acc, p, pstride, lat, n, rank, x);
  for (; x < rank; ++x)
    for (int j = 0; j < NR; ++j) {
      float c = acc[j * rank + x];
      for (int64_t t = 0; t < n; ++t) c += p[j * pstride + t] * lat[t][x];
      acc[j * rank + x] = c;
    }
}

struct Task {
  const float *q_latent, *q_rope;      // this batch row's (heads, q_len, rank / rope_dim)
  const float *latent_new, *rope_new;  // this batch row's chunk (q_len, rank / rope_dim)
  const float *latent_pool, *rope_pool;
  const int32_t *table;  // this batch row's block table
  float *out;            // this batch row's (q_len, heads, rank)
  int64_t ctx, q_len, heads, h0, nh, rank, rope_dim, block_size, slot_offset;
  float scale;
};

struct Scratch {
  float *qs, *acc, *sc, *m, *l;  // rows x (rank + rope_dim), rows x rank, rows x stride, rows, rows
  const float **lat, **rope;     // block_size row pointers
};

// Heads [h0, h0 + nh) of one batch row; query rows r = i * nh + (h - h0).
template <class V>
MFT_MLA_INLINE void task_body(const Task &g, const Scratch &w) {
  const int64_t R = g.rank, Dr = g.rope_dim, dq = R + Dr, rows = g.q_len * g.nh, bs = g.block_size;
  const int64_t stride = round_up(bs, kPad);
  for (int64_t i = 0; i < g.q_len; ++i)
    for (int64_t hh = 0; hh < g.nh; ++hh) {
      const int64_t h = g.h0 + hh;
      const float *ql = g.q_latent + (h * g.q_len + i) * R, *qr = g.q_rope + (h * g.q_len + i) * Dr;
      float *dst = w.qs + (i * g.nh + hh) * dq;
      for (int64_t x = 0; x < R; ++x) dst[x] = ql[x] * g.scale;
      for (int64_t x = 0; x < Dr; ++x) dst[R + x] = qr[x] * g.scale;
    }
  std::fill(w.m, w.m + rows, kNegInf);
  std::fill(w.l, w.l + rows, 0.f);
  std::fill(w.acc, w.acc + rows * R, 0.f);
  const int64_t first_q = g.ctx - g.q_len;  // position of query 0; positions before it are in the pools
  for (int64_t b0 = 0, blk = 0; b0 < g.ctx; b0 += bs, ++blk) {
    const int64_t n = std::min(bs, g.ctx - b0);
    const int64_t base = b0 < first_q ? g.slot_offset + static_cast<int64_t>(g.table[blk]) * bs : 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t pos = b0 + t;
      if (pos < first_q) {
        w.lat[t] = g.latent_pool + (base + t) * R;
        w.rope[t] = g.rope_pool + (base + t) * Dr;
      } else {
        w.lat[t] = g.latent_new + (pos - first_q) * R;
        w.rope[t] = g.rope_new + (pos - first_q) * Dr;
      }
    }
    // Scores: 4 query rows x NK keys per pass (the 4 rows stay in L1 over the block).
    constexpr int NK = lanes<V> == 16 ? 4 : 2, NV = lanes<V> == 16 ? 4 : 2;
    for (int64_t r = 0; r < rows; ++r) std::fill(w.sc + r * stride + n, w.sc + (r + 1) * stride, kNegInf);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      int64_t t = 0;
      for (; t + NK <= n; t += NK)
        scores_block<V, 4, NK>(w.qs + r * dq, dq, w.lat + t, w.rope + t, R, Dr, w.sc + r * stride + t, stride);
      for (; t < n; ++t)
        scores_block<V, 4, 1>(w.qs + r * dq, dq, w.lat + t, w.rope + t, R, Dr, w.sc + r * stride + t, stride);
    }
    for (; r < rows; ++r) {
      int64_t t = 0;
      for (; t + NK <= n; t += NK)
        scores_block<V, 1, NK>(w.qs + r * dq, dq, w.lat + t, w.rope + t, R, Dr, w.sc + r * stride + t, stride);
      for (; t < n; ++t)
        scores_block<V, 1, 1>(w.qs + r * dq, dq, w.lat + t, w.rope + t, R, Dr, w.sc + r * stride + t, stride);
    }
    // Chunk queries see the chunk's keys up to their own position.
    if (b0 + n > first_q + 1)
      for (r = 0; r < rows; ++r) {
        const int64_t visible = first_q + r / g.nh + 1;  // positions [0, visible)
        for (int64_t t = std::max<int64_t>(0, visible - b0); t < n; ++t) w.sc[r * stride + t] = kNegInf;
      }
    // Online softmax per query row (the scores become weights p), then acc += P . latent, 4 rows at a time.
    constexpr int W = lanes<V>;
    for (r = 0; r < rows; ++r) {
      float *sr = w.sc + r * stride;
      V mv = splat<V>(w.m[r]);
      for (int64_t c = 0; c < stride; c += W) {
        const V x = vload<V>(sr + c);
        mv = x > mv ? x : mv;
      }
      const float mx = hmax(mv);
      if (mx == kNegInf) {  // no visible key in this block: weights 0, m / l / acc unchanged
        std::fill(sr, sr + stride, 0.f);
        continue;
      }
      online_softmax_step<V>(sr, stride, mx, w.m[r], w.l[r], w.acc + r * R, R);
    }
    for (r = 0; r + 4 <= rows; r += 4) accumulate_rows<V, 4, NV>(w.acc + r * R, w.sc + r * stride, stride, w.lat, n, R);
    for (; r < rows; ++r) accumulate_rows<V, 1, NV>(w.acc + r * R, w.sc + r * stride, stride, w.lat, n, R);
  }
  for (int64_t i = 0; i < g.q_len; ++i)
    for (int64_t hh = 0; hh < g.nh; ++hh) {
      const int64_t r = i * g.nh + hh;
      const float inv = w.l[r] > 0.f ? 1.f / w.l[r] : 0.f;
      float *o = g.out + (i * g.heads + g.h0 + hh) * R;
      for (int64_t x = 0; x < R; ++x) o[x] = w.acc[r * R + x] * inv;
    }
}

#define MFT_MLA_CALL(V) task_body<V>(g, w)
MFT_ISA_DISPATCH(void, mla_task, (const Task &g, const Scratch &w), MFT_MLA_CALL)
#undef MFT_MLA_CALL

// Below this many multiply-adds per call a second thread costs more than it saves.
constexpr int64_t kMinWorkForThreads = 1 << 18;

}  // namespace

std::string check_paged_mla_args(const PagedMlaShape &s, const int32_t *block_table, const int32_t *context_lens) {
  if (s.batch < 0 || s.q_len <= 0 || s.heads <= 0 || s.rank <= 0 || s.rope_dim < 0 || s.max_blocks < 0 ||
      s.pool_slots < 0 || s.slot_offset < 0)
    return "sizes must be positive";
  if (s.block_size <= 0 || (s.block_size & (s.block_size - 1)) != 0) return "block_size must be a power of two";
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t ctx = context_lens[b];
    if (ctx < s.q_len || ctx > s.max_blocks * s.block_size)
      return "context_lens must be within [q_len, max_blocks * block_size]";
    const int64_t used = (ctx - s.q_len + s.block_size - 1) / s.block_size;  // blocks read from the pools
    for (int64_t j = 0; j < used; ++j) {
      const int64_t blk = block_table[b * s.max_blocks + j];
      if (blk < 0 || s.slot_offset + (blk + 1) * s.block_size > s.pool_slots)
        return "block_table entries must address blocks inside the pool";
    }
  }
  return "";
}

void paged_mla_forward(const float *q_latent, const float *q_rope, const float *latent_new, const float *rope_new,
                       const float *latent_pool, const float *rope_pool, const int32_t *block_table,
                       const int32_t *context_lens, float *out, const PagedMlaShape &s, float scale, int threads) {
  const int64_t R = s.rank, Dr = s.rope_dim;
  int64_t work = 0;  // multiply-adds: scores (rank + rope_dim) and output (rank) per (query row, key)
  for (int64_t b = 0; b < s.batch; ++b) work += static_cast<int64_t>(context_lens[b]) * s.q_len * s.heads * (2 * R + Dr);
  int want = 1;
  if (work >= kMinWorkForThreads) want = threads > 0 ? threads : attention_threads();
  // Fewer rows than threads: split each row's heads into ranges (each range reads the latent again).
  int64_t per = s.heads;
  if (want > s.batch && s.batch > 0) {
    const int64_t ranges = std::min<int64_t>(s.heads, (want + s.batch - 1) / s.batch);
    per = (s.heads + ranges - 1) / ranges;
  }
  const int64_t splits = (s.heads + per - 1) / per, tasks = s.batch * splits;
  const int n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, tasks)));
  const int64_t rows = s.q_len * per, stride = round_up(s.block_size, kPad);
  const mla_task_type fn = mla_task_fn();
  std::atomic<int64_t> next{0};
  parallel_rows(n, n, [&](int64_t, int64_t, int) {
    std::vector<float> qs(rows * (R + Dr)), acc(rows * R), sc(rows * stride), m(rows), l(rows);
    std::vector<const float *> lat(s.block_size), rope(s.block_size);
    const Scratch w{qs.data(), acc.data(), sc.data(), m.data(), l.data(), lat.data(), rope.data()};
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) {
      const int64_t b = t / splits, h0 = (t % splits) * per;
      const Task g{q_latent + b * s.heads * s.q_len * R, q_rope + b * s.heads * s.q_len * Dr,
                   latent_new + b * s.q_len * R,         rope_new + b * s.q_len * Dr,
                   latent_pool,                          rope_pool,
                   block_table + b * s.max_blocks,       out + b * s.q_len * s.heads * R,
                   context_lens[b],                      s.q_len,
                   s.heads,                              h0,
                   std::min(per, s.heads - h0),          R,
                   Dr,                                   s.block_size,
                   s.slot_offset,                        scale};
      fn(g, w);
    }
  });
}

}  // namespace mft::kernels
