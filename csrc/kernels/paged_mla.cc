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

// out[j * ostride] = q_j . [lat, rope] for the 4 query rows q_j = q + j * ldq (each rank + rope_dim
// numbers: the scaled absorbed query, then the scaled rope query). The key row is loaded once for all 4.
template <class V>
MFT_MLA_INLINE void scores4(const float *q, int64_t ldq, const float *lat, int64_t rank, const float *rope,
                            int64_t rope_dim, float *out, int64_t ostride) {
  constexpr int W = lanes<V>;
  V a0{}, a1{}, a2{}, a3{};
  float t0 = 0.f, t1 = 0.f, t2 = 0.f, t3 = 0.f;
  const float *q0 = q, *q1 = q + ldq, *q2 = q + 2 * ldq, *q3 = q + 3 * ldq;
  int64_t x = 0;
  for (; x + W <= rank; x += W) {
    const V k = vload<V>(lat + x);
    a0 += vload<V>(q0 + x) * k;
    a1 += vload<V>(q1 + x) * k;
    a2 += vload<V>(q2 + x) * k;
    a3 += vload<V>(q3 + x) * k;
  }
  for (; x < rank; ++x) {
    t0 += q0[x] * lat[x], t1 += q1[x] * lat[x], t2 += q2[x] * lat[x], t3 += q3[x] * lat[x];
  }
  q0 += rank, q1 += rank, q2 += rank, q3 += rank;
  for (x = 0; x + W <= rope_dim; x += W) {
    const V k = vload<V>(rope + x);
    a0 += vload<V>(q0 + x) * k;
    a1 += vload<V>(q1 + x) * k;
    a2 += vload<V>(q2 + x) * k;
    a3 += vload<V>(q3 + x) * k;
  }
  for (; x < rope_dim; ++x) {
    t0 += q0[x] * rope[x], t1 += q1[x] * rope[x], t2 += q2[x] * rope[x], t3 += q3[x] * rope[x];
  }
  out[0] = hsum(a0) + t0;
  out[ostride] = hsum(a1) + t1;
  out[2 * ostride] = hsum(a2) + t2;
  out[3 * ostride] = hsum(a3) + t3;
}

// scores4 for two key rows at once (8 accumulators: each query load serves two keys); out[j * ostride + u]
// for key u of (lat0, rope0), (lat1, rope1). The same order of sums per score as scores4.
template <class V>
MFT_MLA_INLINE void scores4x2(const float *q, int64_t ldq, const float *lat0, const float *lat1, int64_t rank,
                              const float *rope0, const float *rope1, int64_t rope_dim, float *out, int64_t ostride) {
  constexpr int W = lanes<V>;
  V a0{}, a1{}, a2{}, a3{}, b0{}, b1{}, b2{}, b3{};
  float t[8] = {};
  const float *qs[4] = {q, q + ldq, q + 2 * ldq, q + 3 * ldq};
  auto part = [&](const float *k0, const float *k1, int64_t d, int64_t off) {
    int64_t x = 0;
    for (; x + W <= d; x += W) {
      const V u = vload<V>(k0 + x), v = vload<V>(k1 + x);
      const V q0 = vload<V>(qs[0] + off + x), q1 = vload<V>(qs[1] + off + x), q2 = vload<V>(qs[2] + off + x),
              q3 = vload<V>(qs[3] + off + x);
      a0 += q0 * u, a1 += q1 * u, a2 += q2 * u, a3 += q3 * u;
      b0 += q0 * v, b1 += q1 * v, b2 += q2 * v, b3 += q3 * v;
    }
    for (; x < d; ++x)
      for (int j = 0; j < 4; ++j) t[j] += qs[j][off + x] * k0[x], t[4 + j] += qs[j][off + x] * k1[x];
  };
  part(lat0, lat1, rank, 0);
  part(rope0, rope1, rope_dim, rank);
  out[0] = hsum(a0) + t[0], out[ostride] = hsum(a1) + t[1], out[2 * ostride] = hsum(a2) + t[2],
  out[3 * ostride] = hsum(a3) + t[3];
  out[1] = hsum(b0) + t[4], out[ostride + 1] = hsum(b1) + t[5], out[2 * ostride + 1] = hsum(b2) + t[6],
  out[3 * ostride + 1] = hsum(b3) + t[7];
}

// The same for one query row (the rows left over after the groups of 4); the same order of sums.
template <class V>
MFT_MLA_INLINE float score1(const float *q, const float *lat, int64_t rank, const float *rope, int64_t rope_dim) {
  constexpr int W = lanes<V>;
  V a{};
  float t = 0.f;
  int64_t x = 0;
  for (; x + W <= rank; x += W) a += vload<V>(q + x) * vload<V>(lat + x);
  for (; x < rank; ++x) t += q[x] * lat[x];
  q += rank;
  for (x = 0; x + W <= rope_dim; x += W) a += vload<V>(q + x) * vload<V>(rope + x);
  for (; x < rope_dim; ++x) t += q[x] * rope[x];
  return hsum(a) + t;
}

// acc[0, rank) += sum_t p[t] * lat[t][0, rank), t in increasing order (zero weights skipped: masked
// keys). The accumulator stays in registers 4 vectors at a time while the block's rows stream by.
template <class V>
MFT_MLA_INLINE void accumulate(float *acc, const float *p, const float *const *lat, int64_t n, int64_t rank) {
  constexpr int W = lanes<V>;
  int64_t x = 0;
  for (; x + 4 * W <= rank; x += 4 * W) {
    V c0 = vload<V>(acc + x), c1 = vload<V>(acc + x + W), c2 = vload<V>(acc + x + 2 * W),
      c3 = vload<V>(acc + x + 3 * W);
    for (int64_t t = 0; t < n; ++t) {
      if (p[t] == 0.f) continue;
      const V pv = splat<V>(p[t]);
      const float *v = lat[t] + x;
      c0 += pv * vload<V>(v);
      c1 += pv * vload<V>(v + W);
      c2 += pv * vload<V>(v + 2 * W);
      c3 += pv * vload<V>(v + 3 * W);
    }
    vstore<V>(acc + x, c0);
    vstore<V>(acc + x + W, c1);
    vstore<V>(acc + x + 2 * W, c2);
    vstore<V>(acc + x + 3 * W, c3);
  }
  for (; x + W <= rank; x += W) {
    V c = vload<V>(acc + x);
    for (int64_t t = 0; t < n; ++t)
      if (p[t] != 0.f) c += splat<V>(p[t]) * vload<V>(lat[t] + x);
    vstore<V>(acc + x, c);
  }
  for (; x < rank; ++x) {
    float c = acc[x];
    for (int64_t t = 0; t < n; ++t)
      if (p[t] != 0.f) c += p[t] * lat[t][x];
    acc[x] = c;
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
    // Scores: 4 query rows at a time against 2 keys of the block at a time (the 4 rows stay in L1).
    for (int64_t r = 0; r < rows; ++r) std::fill(w.sc + r * stride + n, w.sc + (r + 1) * stride, kNegInf);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      int64_t t = 0;
      for (; t + 2 <= n; t += 2)
        scores4x2<V>(w.qs + r * dq, dq, w.lat[t], w.lat[t + 1], R, w.rope[t], w.rope[t + 1], Dr, w.sc + r * stride + t,
                     stride);
      if (t < n) scores4<V>(w.qs + r * dq, dq, w.lat[t], R, w.rope[t], Dr, w.sc + r * stride + t, stride);
    }
    for (; r < rows; ++r)
      for (int64_t t = 0; t < n; ++t) w.sc[r * stride + t] = score1<V>(w.qs + r * dq, w.lat[t], R, w.rope[t], Dr);
    // Chunk queries see the chunk's keys up to their own position.
    if (b0 + n > first_q + 1)
      for (r = 0; r < rows; ++r) {
        const int64_t visible = first_q + r / g.nh + 1;  // positions [0, visible)
        for (int64_t t = std::max<int64_t>(0, visible - b0); t < n; ++t) w.sc[r * stride + t] = kNegInf;
      }
    // Online softmax per query row, then acc += P . latent.
    constexpr int W = lanes<V>;
    for (r = 0; r < rows; ++r) {
      float *sr = w.sc + r * stride;
      V mv = splat<V>(w.m[r]);
      for (int64_t c = 0; c < stride; c += W) {
        const V x = vload<V>(sr + c);
        mv = x > mv ? x : mv;
      }
      const float mx = hmax(mv);
      if (mx == kNegInf) continue;  // no visible key in this block (m is still -inf)
      online_softmax_step<V>(sr, stride, mx, w.m[r], w.l[r], w.acc + r * R, R);
      accumulate<V>(w.acc + r * R, sr, w.lat, n, R);
    }
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
