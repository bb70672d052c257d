#include "kernels/attention.h"
#include "kernels/isa.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "kernels/online_softmax.h"
#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

// Query rows = key columns per tile. Tiles are aligned to multiples of kB in
// both directions, so K^T / V^T are packed once per key tile; without a query
// offset the causal diagonal falls inside the diagonal tiles (with one it may
// cross two: every row is masked by its own visible range either way).
// A 64x64 fp32 score tile is 16 KB.
constexpr int64_t kB = 64;

#define MFT_INLINE static inline __attribute__((always_inline))

using tile::gemm;
using tile::hmax;
using tile::hsum;
using tile::lanes;
using tile::online_softmax_step;
using tile::vexp_nonpos;
using tile::vload;
using tile::vstore;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Keys [start[i], limit[i]) are visible from query i of one sample (position
// p = q_offset + i in the key sequence of `keys`): from the start of its
// document to itself (causal) or to the end of its document (bidirectional).
// Both are non-decreasing in i.
void visible_keys(const SeqEnds &e, int64_t b, const AttentionShape &s, int64_t *start, int64_t *limit) {
  const int32_t *row = e.ends == nullptr ? nullptr : e.ends + (e.rows == 1 ? 0 : b) * e.count;
  const int64_t count = row == nullptr ? 0 : e.count, keys = s.keys();
  int64_t cur = 0, n = 0;
  for (int64_t i = 0; i < s.seq; ++i) {
    const int64_t p = s.q_offset + i;
    while (n < count && row[n] <= p) cur = row[n++];
    start[i] = cur;
    limit[i] = s.causal ? p + 1 : (n < count ? row[n] : keys);
  }
}

// dst (D x kB) = src (cols x D) transposed, columns >= cols zeroed.
MFT_INLINE void transpose_tile(const float *src, int64_t cols, int64_t d, float *dst) {
  for (int64_t x = 0; x < d; ++x) {
    for (int64_t c = 0; c < cols; ++c) dst[x * kB + c] = src[c * d + x];
    for (int64_t c = cols; c < kB; ++c) dst[x * kB + c] = 0.f;
  }
}

// Valid keys [c0, c1) of query i in the key tile starting at j0 with `cols` keys
// (c1 <= c0: none): same document and, when causal, not after the query.
MFT_INLINE void valid_cols(int64_t i, int64_t j0, int64_t cols, const int64_t *start, const int64_t *limit,
                           int64_t *c0, int64_t *c1) {
  *c0 = std::min(cols, std::max<int64_t>(0, start[i] - j0));
  *c1 = std::max(*c0, std::min(cols, limit[i] - j0));
}

// Row x of length kB: x = scale * x, -inf outside [c0, c1).
template <class V>
MFT_INLINE void scale_and_mask(float *x, float scale, int64_t c0, int64_t c1) {
  for (int64_t c = 0; c < kB; c += lanes<V>) vstore<V>(x + c, vload<V>(x + c) * scale);
  for (int64_t c = 0; c < c0; ++c) x[c] = kNegInf;
  for (int64_t c = c1; c < kB; ++c) x[c] = kNegInf;
}

// Query rows [i_begin, i_end) of one head: out (seq x d), lse (seq); k, v
// (kv x d). kT holds K^T of every key tile (tile t at kT + t * d * kB, packed
// here for the tiles these rows see), s is a kB x kB tile, acc kB x d.
template <class V, int MR>
MFT_INLINE void forward_head(const float *q, const float *k, const float *v, float *out, float *lse, int64_t seq,
                             int64_t kv, int64_t d, float scale, const int64_t *start, const int64_t *limit,
                             int64_t i_begin, int64_t i_end, float *kT, float *s, float *acc, float *m, float *l) {
  constexpr int W = lanes<V>;
  // Key tiles these query rows can see (i_begin is a multiple of kB).
  for (int64_t j0 = (start[i_begin] / kB) * kB; j0 < limit[i_end - 1]; j0 += kB)
    transpose_tile(k + j0 * d, std::min(kB, kv - j0), d, kT + j0 * d);
  for (int64_t i0 = i_begin; i0 < i_end; i0 += kB) {
    const int64_t rows = std::min(kB, seq - i0);
    std::fill(m, m + rows, kNegInf);
    std::fill(l, l + rows, 0.f);
    std::fill(acc, acc + rows * d, 0.f);
    const int64_t jend = limit[i0 + rows - 1];  // no key past what the tile's last query sees
    for (int64_t j0 = (start[i0] / kB) * kB; j0 < jend; j0 += kB) {
      const int64_t cols = std::min(kB, kv - j0);
      gemm<V, MR, false>(q + i0 * d, d, kT + j0 * d, kB, s, kB, rows, d, kB, false);  // S = Q K^T
      for (int64_t r = 0; r < rows; ++r) {
        int64_t c0, c1;
        valid_cols(i0 + r, j0, cols, start, limit, &c0, &c1);
        float *sr = s + r * kB;
        if (c1 <= c0) {  // no visible key in this tile (earlier document)
          std::fill(sr, sr + kB, 0.f);
          continue;
        }
        // Scale (and mask) the row while taking its max.
        V mv = tile::splat<V>(m[r]);
        if (c0 == 0 && c1 == kB) {
          for (int64_t c = 0; c < kB; c += W) {
            const V x = vload<V>(sr + c) * scale;
            vstore<V>(sr + c, x);
            mv = x > mv ? x : mv;
          }
        } else {
          scale_and_mask<V>(sr, scale, c0, c1);
          for (int64_t c = 0; c < kB; c += W) {
            const V x = vload<V>(sr + c);
            mv = x > mv ? x : mv;
          }
        }
        online_softmax_step<V>(sr, kB, hmax(mv), m[r], l[r], acc + r * d, d);
      }
      gemm<V, MR, false>(s, kB, v + j0 * d, d, acc, d, rows, cols, d, true);  // acc += P V
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.f / l[r];
      float *o = out + (i0 + r) * d;
      for (int64_t x = 0; x < d; ++x) o[x] = acc[r * d + x] * inv;
      lse[i0 + r] = m[r] + std::log(l[r]);
    }
  }
}

// One kv head and the n_rep query heads sharing it (FlashAttention-2: key tiles
// outside, query tiles inside; dK, dV of a key tile stay in dk_acc / dv_acc).
// dq (n_rep heads of seq rows) must be zeroed; k, v, dk, dv have kv rows.
// p and dp are kB x kB tiles, kT / vT d x kB.
template <class V, int MR>
MFT_INLINE void backward_group(const float *dout, const float *q, const float *k, const float *v, const float *out,
                               const float *lse, float *dq, float *dk, float *dv, int64_t n_rep, int64_t seq,
                               int64_t kv, int64_t d, float scale, const int64_t *start, const int64_t *limit, float *kT,
                               float *vT, float *p, float *dp, float *dk_acc, float *dv_acc, float *delta) {
  constexpr int W = lanes<V>;
  const int64_t head = seq * d;
  // delta_i = dout_i . out_i for every query head of the group.
  for (int64_t h = 0; h < n_rep; ++h)
    for (int64_t i = 0; i < seq; ++i) {
      const float *a = dout + h * head + i * d, *b = out + h * head + i * d;
      float t = 0.f;
      for (int64_t x = 0; x < d; ++x) t += a[x] * b[x];
      delta[h * seq + i] = t;
    }
  for (int64_t j0 = 0; j0 < kv; j0 += kB) {
    const int64_t cols = std::min(kB, kv - j0);
    transpose_tile(k + j0 * d, cols, d, kT);
    transpose_tile(v + j0 * d, cols, d, vT);
    std::fill(dk_acc, dk_acc + cols * d, 0.f);
    std::fill(dv_acc, dv_acc + cols * d, 0.f);
    for (int64_t h = 0; h < n_rep; ++h) {
      const float *qh = q + h * head, *doh = dout + h * head;
      const float *lh = lse + h * seq, *dh = delta + h * seq;
      float *dqh = dq + h * head;
      // Query rows whose visible keys all end before j0 cannot see this key tile (causal:
      // every row before j0); starts are non-decreasing, so stop at the first tile
      // whose documents all begin after it.
      const int64_t first = std::upper_bound(limit, limit + seq, j0) - limit;
      for (int64_t i0 = (first / kB) * kB; i0 < seq && start[i0] < j0 + cols; i0 += kB) {
        const int64_t rows = std::min(kB, seq - i0);
        gemm<V, MR, false>(qh + i0 * d, d, kT, kB, p, kB, rows, d, kB, false);    // S = Q K^T
        gemm<V, MR, false>(doh + i0 * d, d, vT, kB, dp, kB, rows, d, kB, false);  // dP = dO V^T
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          int64_t c0, c1;
          valid_cols(i, j0, cols, start, limit, &c0, &c1);
          float *pr = p + r * kB, *dpr = dp + r * kB;
          if (c1 <= c0) {
            std::fill(pr, pr + kB, 0.f);
            std::fill(dpr, dpr + kB, 0.f);
            continue;
          }
          const bool full = c0 == 0 && c1 == kB;
          if (!full) scale_and_mask<V>(pr, scale, c0, c1);
          const float sc = full ? scale : 1.f;  // full rows are scaled here, in the same pass
          const V li = tile::splat<V>(lh[i]), di = tile::splat<V>(dh[i]);
          for (int64_t c = 0; c < kB; c += W) {
            const V pc = vexp_nonpos(vload<V>(pr + c) * sc - li);
            vstore<V>(pr + c, pc);
            vstore<V>(dpr + c, pc * (vload<V>(dpr + c) - di) * scale);  // dS (scaled for dQ, dK)
          }
        }
        gemm<V, MR, true>(p, kB, doh + i0 * d, d, dv_acc, d, cols, rows, d, true);        // dV += P^T dO
        gemm<V, MR, true>(dp, kB, qh + i0 * d, d, dk_acc, d, cols, rows, d, true);        // dK += dS^T Q
        gemm<V, MR, false>(dp, kB, k + j0 * d, d, dqh + i0 * d, d, rows, cols, d, true);  // dQ += dS K
      }
    }
    std::memcpy(dk + j0 * d, dk_acc, sizeof(float) * cols * d);
    std::memcpy(dv + j0 * d, dv_acc, sizeof(float) * cols * d);
  }
}

// The same bodies compiled three times and chosen at run time, so the wheel
// runs on any CPU: AVX-512 (16-float vectors, 8x32 register blocks), AVX2+FMA
// (8-float vectors, 6x16 blocks), and baseline x86-64 / other architectures
// (4-float vectors, 4x8 blocks: SSE2 or NEON registers).
#define MFT_FORWARD_ARGS                                                                                       \
  const float *q, const float *k, const float *v, float *out, float *lse, int64_t seq, int64_t kv, int64_t d,   \
      float scale, const int64_t *start, const int64_t *limit, int64_t i_begin, int64_t i_end, float *kT, float *s, \
      float *acc, float *m, float *l
#define MFT_BACKWARD_ARGS                                                                                  \
  const float *dout, const float *q, const float *k, const float *v, const float *out, const float *lse,   \
      float *dq, float *dk, float *dv, int64_t n_rep, int64_t seq, int64_t kv, int64_t d, float scale,     \
      const int64_t *start, const int64_t *limit, float *kT, float *vT, float *p, float *dp, float *dk_acc, \
      float *dv_acc, float *delta
#define MFT_FORWARD_CALL q, k, v, out, lse, seq, kv, d, scale, start, limit, i_begin, i_end, kT, s, acc, m, l
#define MFT_BACKWARD_CALL \
  dout, q, k, v, out, lse, dq, dk, dv, n_rep, seq, kv, d, scale, start, limit, kT, vT, p, dp, dk_acc, dv_acc, delta

using ForwardFn = void (*)(MFT_FORWARD_ARGS);
using BackwardFn = void (*)(MFT_BACKWARD_ARGS);

void forward_head_generic(MFT_FORWARD_ARGS) { forward_head<tile::v4, 4>(MFT_FORWARD_CALL); }
void backward_group_generic(MFT_BACKWARD_ARGS) { backward_group<tile::v4, 4>(MFT_BACKWARD_CALL); }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void forward_head_avx2(MFT_FORWARD_ARGS) {
  forward_head<tile::v8, 6>(MFT_FORWARD_CALL);
}
__attribute__((target("avx2,fma"))) void backward_group_avx2(MFT_BACKWARD_ARGS) {
  backward_group<tile::v8, 6>(MFT_BACKWARD_CALL);
}
__attribute__((target("avx512f,avx2,fma"))) void forward_head_avx512(MFT_FORWARD_ARGS) {
  forward_head<tile::v16, 8>(MFT_FORWARD_CALL);
}
__attribute__((target("avx512f,avx2,fma"))) void backward_group_avx512(MFT_BACKWARD_ARGS) {
  backward_group<tile::v16, 8>(MFT_BACKWARD_CALL);
}
ForwardFn forward_fn() {
  const int l = isa_level();
  return l == 2 ? forward_head_avx512 : l == 1 ? forward_head_avx2 : forward_head_generic;
}
BackwardFn backward_fn() {
  const int l = isa_level();
  return l == 2 ? backward_group_avx512 : l == 1 ? backward_group_avx2 : backward_group_generic;
}
#else
ForwardFn forward_fn() { return forward_head_generic; }
BackwardFn backward_fn() { return backward_group_generic; }
#endif

int threads_for(int64_t tasks, int threads) {
  const int64_t want = threads > 0 ? threads : attention_threads();
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, tasks)));
}

}  // namespace

int attention_threads() {
  static const int n = [] {
    if (const char *env = std::getenv("MFT_ATTENTION_THREADS")) {
      const int v = std::atoi(env);
      if (v >= 1) return std::min(v, 256);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(std::min(hw, 64u));
  }();
  return n;
}

std::string check_attention_args(const AttentionShape &s, const SeqEnds &e) {
  if (s.batch < 0 || s.heads <= 0 || s.kv_heads <= 0 || s.seq < 0 || s.dim <= 0)
    return "sizes must be positive";
  if (s.heads % s.kv_heads != 0) return "heads must be a multiple of kv_heads";
  if (s.kv_seq < 0 || s.q_offset < 0) return "kv_seq and q_offset must not be negative";
  if (s.q_offset + s.seq > s.keys())
    return "the query rows [q_offset, q_offset + seq) must lie within the kv_seq keys";
  if (e.ends == nullptr) return "";
  if (e.rows != 1 && e.rows != s.batch) return "seq_ends must have 1 or batch rows";
  for (int64_t r = 0; r < e.rows; ++r) {
    int32_t prev = 0;
    for (int64_t n = 0; n < e.count; ++n) {
      const int32_t x = e.ends[r * e.count + n];
      if (x < prev || x > s.keys()) return "seq_ends rows must be non-decreasing and within [0, kv_seq]";
      prev = x;
    }
  }
  return "";
}

// Query rows per forward task: 8 tiles, so a long sequence gives several tasks per head.
constexpr int64_t kRowsPerTask = 8 * kB;

// Workers take tasks from a shared counter (dynamic scheduling, so a worker
// slowed by other jobs on the machine does not hold the others up). Which
// worker runs a task does not change its result: tasks write disjoint outputs.
template <class F>
void run_tasks(int64_t tasks, int threads, const F &body) {
  std::atomic<int64_t> next{0};
  const int n = threads_for(tasks, threads);
  parallel_rows(n, n, [&](int64_t, int64_t, int) {
    typename F::Scratch scratch;
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) body(t, scratch);
  });
}

void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                       const AttentionShape &s, float scale, const SeqEnds &ends, int threads) {
  const int64_t n_rep = s.heads / s.kv_heads, head = s.seq * s.dim, kv_head = s.keys() * s.dim;
  const int64_t chunks = (s.seq + kRowsPerTask - 1) / kRowsPerTask, bh = s.batch * s.heads;
  const ForwardFn fn = forward_fn();
  const int64_t padded = (s.keys() + kB - 1) / kB * kB;
  struct Body {
    struct Scratch {
      std::vector<int64_t> start, limit;
      std::vector<float> kT, sc, acc, m, l;
      int64_t cur_b = -1;
    };
    const float *q, *k, *v;
    float *out, *lse;
    const AttentionShape &s;
    const SeqEnds &ends;
    float scale;
    int64_t n_rep, head, kv_head, chunks, bh, padded;
    ForwardFn fn;
    void operator()(int64_t t, Scratch &x) const {
      if (x.start.empty()) {
        x.start.resize(s.seq), x.limit.resize(s.seq);
        x.kT.resize(s.dim * padded), x.sc.resize(kB * kB), x.acc.resize(kB * s.dim), x.m.resize(kB), x.l.resize(kB);
      }
      // Longest chunks (the last rows of every head see the most keys) first.
      const int64_t c = chunks - 1 - t / bh, i = t % bh;
      const int64_t b = i / s.heads, h = i % s.heads, kvh = b * s.kv_heads + h / n_rep;
      if (b != x.cur_b) visible_keys(ends, b, s, x.start.data(), x.limit.data()), x.cur_b = b;
      const int64_t i_begin = c * kRowsPerTask, i_end = std::min(s.seq, i_begin + kRowsPerTask);
      fn(q + i * head, k + kvh * kv_head, v + kvh * kv_head, out + i * head, lse + i * s.seq, s.seq, s.keys(), s.dim,
         scale,
         x.start.data(), x.limit.data(), i_begin, i_end, x.kT.data(), x.sc.data(), x.acc.data(), x.m.data(), x.l.data());
    }
  } body{q, k, v, out, lse, s, ends, scale, n_rep, head, kv_head, chunks, bh, padded, fn};
  run_tasks(chunks * bh, threads, body);
}

void attention_backward(const float *dout, const float *q, const float *k, const float *v,
                        const float *out, const float *lse, float *dq, float *dk, float *dv,
                        const AttentionShape &s, float scale, const SeqEnds &ends, int threads) {
  const int64_t n_rep = s.heads / s.kv_heads, head = s.seq * s.dim, kv_head = s.keys() * s.dim;
  const BackwardFn fn = backward_fn();
  struct Body {
    struct Scratch {
      std::vector<int64_t> start, limit;
      std::vector<float> kT, vT, p, dp, dk_acc, dv_acc, delta;
      int64_t cur_b = -1;
    };
    const float *dout, *q, *k, *v, *out, *lse;
    float *dq, *dk, *dv;
    const AttentionShape &s;
    const SeqEnds &ends;
    float scale;
    int64_t n_rep, head, kv_head;
    BackwardFn fn;
    void operator()(int64_t t, Scratch &x) const {
      if (x.start.empty()) {
        x.start.resize(s.seq), x.limit.resize(s.seq);
        x.kT.resize(s.dim * kB), x.vT.resize(s.dim * kB), x.p.resize(kB * kB), x.dp.resize(kB * kB);
        x.dk_acc.resize(kB * s.dim), x.dv_acc.resize(kB * s.dim), x.delta.resize(n_rep * s.seq);
      }
      const int64_t b = t / s.kv_heads;
      const int64_t qh = t * n_rep;  // first query head of this group (b*H + g*n_rep)
      if (b != x.cur_b) visible_keys(ends, b, s, x.start.data(), x.limit.data()), x.cur_b = b;
      std::fill(dq + qh * head, dq + (qh + n_rep) * head, 0.f);
      fn(dout + qh * head, q + qh * head, k + t * kv_head, v + t * kv_head, out + qh * head, lse + qh * s.seq,
         dq + qh * head, dk + t * kv_head, dv + t * kv_head, n_rep, s.seq, s.keys(), s.dim, scale, x.start.data(),
         x.limit.data(),
         x.kT.data(),
         x.vT.data(), x.p.data(), x.dp.data(), x.dk_acc.data(), x.dv_acc.data(), x.delta.data());
    }
  } body{dout, q, k, v, out, lse, dq, dk, dv, s, ends, scale, n_rep, head, kv_head, fn};
  run_tasks(s.batch * s.kv_heads, threads, body);
}

}  // namespace mft::kernels
