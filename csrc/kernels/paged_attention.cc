#include "kernels/paged_attention.h"
#include "kernels/isa.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <vector>

#include "kernels/attention.h"
#include "kernels/online_softmax.h"
#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

#define MFT_INLINE static inline __attribute__((always_inline))

using tile::hmax;
using tile::hsum;
using tile::lanes;
using tile::online_softmax_step;
using tile::vexp_nonpos;
using tile::vload;
using tile::vstore;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Score rows are padded to a multiple of the widest vector (masked with -inf).
constexpr int64_t kPad = 16;

// sum_x a[x] * b[x] over d (vector body, scalar tail).
template <class V>
MFT_INLINE float dot(const float *a, const float *b, int64_t d) {
  constexpr int W = lanes<V>;
  V acc{};
  int64_t x = 0;
  for (; x + W <= d; x += W) acc += vload<V>(a + x) * vload<V>(b + x);
  float t = hsum(acc);
  for (; x < d; ++x) t += a[x] * b[x];
  return t;
}

// lanes<V> int8 values widened to a float vector (GCC's __builtin_convertvector from int8 was
// measured to scalarise here: one movsbl + vcvtsi2ss per lane, int8 slower than float).
MFT_INLINE tile::v4 load_i8(const int8_t *p, tile::v4) {
  return tile::v4{static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2]),
                  static_cast<float>(p[3])};
}
#if defined(__x86_64__) && defined(__GNUC__)
// (non-always-inline: each is inlined into group_avx2 / group_avx512, whose targets include its own)
__attribute__((target("avx2,fma"))) static inline tile::v8 load_i8(const int8_t *p, tile::v8) {
  return (tile::v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}
__attribute__((target("avx512f,avx2,fma"))) static inline tile::v16 load_i8(const int8_t *p, tile::v16) {
  return (tile::v16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))));
}
#endif

// sum_x a[x] * b[x] with int8 b.
template <class V>
MFT_INLINE float dot_i8(const float *a, const int8_t *b, int64_t d) {
  constexpr int W = lanes<V>;
  V acc{};
  int64_t x = 0;
  for (; x + W <= d; x += W) acc += vload<V>(a + x) * load_i8(b + x, V{});
  float t = hsum(acc);
  for (; x < d; ++x) t += a[x] * static_cast<float>(b[x]);
  return t;
}

// y[0..d) += p * v with int8 v.
template <class V>
MFT_INLINE void axpy_i8(float *y, float p, const int8_t *v, int64_t d) {
  constexpr int W = lanes<V>;
  const V pv = tile::splat<V>(p);
  int64_t x = 0;
  for (; x + W <= d; x += W) vstore<V>(y + x, vload<V>(y + x) + pv * load_i8(v + x, V{}));
  for (; x < d; ++x) y[x] += p * static_cast<float>(v[x]);
}

// A cached key's score / a cached value's update: float pools as they are, int8 pools with
// the kv head's scale folded in (q . (s k) = s (q . k); p (s v) = (p s) v).
template <class V>
MFT_INLINE float pool_dot(const float *q, const float *k, int64_t d, float) { return dot<V>(q, k, d); }
template <class V>
MFT_INLINE float pool_dot(const float *q, const int8_t *k, int64_t d, float s) { return dot_i8<V>(q, k, d) * s; }

// y[0..d) = y * c + p * v.
template <class V>
MFT_INLINE void axpy(float *y, float p, const float *v, int64_t d) {
  constexpr int W = lanes<V>;
  const V pv = tile::splat<V>(p);
  int64_t x = 0;
  for (; x + W <= d; x += W) vstore<V>(y + x, vload<V>(y + x) + pv * vload<V>(v + x));
  for (; x < d; ++x) y[x] += p * v[x];
}

template <class V>
MFT_INLINE void pool_axpy(float *y, float p, const float *v, int64_t d, float) { axpy<V>(y, p, v, d); }
template <class V>
MFT_INLINE void pool_axpy(float *y, float p, const int8_t *v, int64_t d, float s) { axpy_i8<V>(y, p * s, v, d); }

struct Group {
  const float *q;        // this batch row's queries (heads, q_len, dim)
  const float *k_new, *v_new;  // this (batch row, kv head)'s chunk keys/values (q_len, dim)
  const void *k_pool, *v_pool;  // float, or int8 with k_scale / v_scale for this kv head
  const int32_t *table;  // this batch row's block table
  float *out;            // same layout as q
  int64_t ctx, q_len, n_rep, heads, kv_heads, kvh, dim, block_size, slot_offset;
  float scale;
  float k_scale, v_scale;  // int8 pools: dequantization scales of this kv head (unused for float pools)
};

// One (batch row, kv head): rows = q_len * n_rep query rows. Scratch: qs (rows x dim),
// acc (rows x dim), sc (rows x stride), m, l (rows).
template <class V, class P>
MFT_INLINE void group_body(const Group &g, float *qs, float *acc, float *sc, float *m, float *l) {
  constexpr int W = lanes<V>;
  const int64_t rows = g.q_len * g.n_rep, d = g.dim, bs = g.block_size;
  const int64_t stride = (bs + kPad - 1) / kPad * kPad;
  for (int64_t i = 0; i < g.q_len; ++i)
    for (int64_t h = 0; h < g.n_rep; ++h) {
      const float *src = g.q + ((g.kvh * g.n_rep + h) * g.q_len + i) * d;
      float *dst = qs + (i * g.n_rep + h) * d;
      for (int64_t x = 0; x < d; ++x) dst[x] = src[x] * g.scale;
    }
  std::fill(m, m + rows, kNegInf);
  std::fill(l, l + rows, 0.f);
  std::fill(acc, acc + rows * d, 0.f);
  const int64_t first_q = g.ctx - g.q_len;  // position of query 0
  const int64_t row_stride = g.kv_heads * d;
  for (int64_t b0 = 0, blk = 0; b0 < g.ctx; b0 += bs, ++blk) {
    const int64_t n = std::min(bs, g.ctx - b0);
    const int64_t base = g.slot_offset + static_cast<int64_t>(g.table[blk]) * bs;
    const P *kb = static_cast<const P *>(g.k_pool) + base * row_stride + g.kvh * d;
    const P *vb = static_cast<const P *>(g.v_pool) + base * row_stride + g.kvh * d;
    // Key/value row of block position t: the pool before the chunk, k_new / v_new (float) inside it.
    // Scores of the block's keys for every row (masked after the row's position).
    for (int64_t r = 0; r < rows; ++r) std::fill(sc + r * stride + n, sc + (r + 1) * stride, kNegInf);
    for (int64_t t = 0; t < n; ++t) {
      const bool cached = b0 + t < first_q;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t visible = first_q + r / g.n_rep + 1;  // keys [0, visible)
        sc[r * stride + t] = b0 + t >= visible ? kNegInf
                             : cached          ? pool_dot<V>(qs + r * d, kb + t * row_stride, d, g.k_scale)
                                               : dot<V>(qs + r * d, g.k_new + (b0 + t - first_q) * d, d);
      }
    }
    // Online softmax: new max, rescale the running sum and accumulator, p = exp(s - max).
    for (int64_t r = 0; r < rows; ++r) {
      float *sr = sc + r * stride;
      V mv = tile::splat<V>(m[r]);
      for (int64_t c = 0; c < stride; c += W) {
        const V x = vload<V>(sr + c);
        mv = x > mv ? x : mv;
      }
      const float mx = hmax(mv);
      if (mx == kNegInf) {  // no visible key in this block
        std::fill(sr, sr + stride, 0.f);
        continue;
      }
      online_softmax_step<V>(sr, stride, mx, m[r], l[r], acc + r * d, d);
    }
    // acc += P V, one value row at a time for all rows.
    for (int64_t t = 0; t < n; ++t) {
      const bool cached = b0 + t < first_q;
      for (int64_t r = 0; r < rows; ++r) {
        const float p = sc[r * stride + t];
        if (p == 0.f) continue;
        if (cached)
          pool_axpy<V>(acc + r * d, p, vb + t * row_stride, d, g.v_scale);
        else
          axpy<V>(acc + r * d, p, g.v_new + (b0 + t - first_q) * d, d);
      }
    }
  }
  for (int64_t i = 0; i < g.q_len; ++i)
    for (int64_t h = 0; h < g.n_rep; ++h) {
      const int64_t r = i * g.n_rep + h;
      const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
      float *o = g.out + (i * g.heads + g.kvh * g.n_rep + h) * d;
      for (int64_t x = 0; x < d; ++x) o[x] = acc[r * d + x] * inv;
    }
}

#define MFT_PAGED_ARGS const Group &g, float *qs, float *acc, float *sc, float *m, float *l
using GroupFn = void (*)(MFT_PAGED_ARGS);

// Compiled per instruction set and pool type, chosen at run time, as attention.cc.
template <class P>
void group_generic(MFT_PAGED_ARGS) { group_body<tile::v4, P>(g, qs, acc, sc, m, l); }
#if defined(__x86_64__) && defined(__GNUC__)
template <class P>
__attribute__((target("avx2,fma"))) void group_avx2(MFT_PAGED_ARGS) { group_body<tile::v8, P>(g, qs, acc, sc, m, l); }
template <class P>
__attribute__((target("avx512f,avx2,fma"))) void group_avx512(MFT_PAGED_ARGS) {
  group_body<tile::v16, P>(g, qs, acc, sc, m, l);
}
template <class P>
GroupFn group_fn() {
  const int l = isa_level();
  return l == 2 ? group_avx512<P> : l == 1 ? group_avx2<P> : group_generic<P>;
}
#else
template <class P>
GroupFn group_fn() { return group_generic<P>; }
#endif

// Below this many multiply-adds per step a second thread costs more than it saves.
constexpr int64_t kMinWorkForThreads = 1 << 18;

}  // namespace

std::string check_paged_attention_args(const PagedAttentionShape &s, const int32_t *block_table,
                                       const int32_t *context_lens) {
  if (s.batch < 0 || s.q_len <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.dim <= 0 || s.max_blocks < 0 ||
      s.pool_slots < 0 || s.slot_offset < 0)
    return "sizes must be positive";
  if (s.heads % s.kv_heads != 0) return "heads must be a multiple of kv_heads";
  if (s.block_size <= 0 || (s.block_size & (s.block_size - 1)) != 0) return "block_size must be a power of two";
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t ctx = context_lens[b];
    if (ctx < s.q_len || ctx > s.max_blocks * s.block_size)
      return "context_lens must be within [q_len, max_blocks * block_size]";
    const int64_t used = (ctx - s.q_len + s.block_size - 1) / s.block_size;  // blocks read from the pool
    for (int64_t j = 0; j < used; ++j) {
      const int64_t blk = block_table[b * s.max_blocks + j];
      if (blk < 0 || s.slot_offset + (blk + 1) * s.block_size > s.pool_slots)
        return "block_table entries must address blocks inside the pool";
    }
  }
  return "";
}

namespace {

// Shared by the float and int8 entry points: one task per (batch row, kv head).
template <class P>
void run_paged(const float *q, const float *k_new, const float *v_new, const P *k_pool, const P *v_pool,
               const float *k_scale, const float *v_scale, const int32_t *block_table, const int32_t *context_lens,
               float *out, const PagedAttentionShape &s, float scale, int threads) {
  const int64_t n_rep = s.heads / s.kv_heads, tasks = s.batch * s.kv_heads;
  const int64_t rows = s.q_len * n_rep, stride = (s.block_size + kPad - 1) / kPad * kPad;
  int64_t work = 0;
  for (int64_t b = 0; b < s.batch; ++b) work += static_cast<int64_t>(context_lens[b]) * s.q_len * s.heads * s.dim;
  int n = 1;
  if (work >= kMinWorkForThreads) {
    const int64_t want = threads > 0 ? threads : attention_threads();
    n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, tasks)));
  }
  const GroupFn fn = group_fn<P>();
  std::atomic<int64_t> next{0};
  parallel_rows(n, n, [&](int64_t, int64_t, int) {
    std::vector<float> qs(rows * s.dim), acc(rows * s.dim), sc(rows * stride), m(rows), l(rows);
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) {
      const int64_t b = t / s.kv_heads, kvh = t % s.kv_heads;
      const int64_t offset = b * s.q_len * s.heads * s.dim, kv_offset = (b * s.kv_heads + kvh) * s.q_len * s.dim;
      const Group g{q + offset, k_new + kv_offset, v_new + kv_offset, k_pool, v_pool, block_table + b * s.max_blocks,
                    out + offset,
                    context_lens[b], s.q_len, n_rep, s.heads, s.kv_heads, kvh, s.dim, s.block_size,
                    s.slot_offset, scale, k_scale != nullptr ? k_scale[kvh] : 1.f,
                    v_scale != nullptr ? v_scale[kvh] : 1.f};
      fn(g, qs.data(), acc.data(), sc.data(), m.data(), l.data());
    }
  });
}

}  // namespace

void paged_attention_forward(const float *q, const float *k_new, const float *v_new, const float *k_pool,
                             const float *v_pool, const int32_t *block_table, const int32_t *context_lens, float *out,
                             const PagedAttentionShape &s, float scale, int threads) {
  run_paged<float>(q, k_new, v_new, k_pool, v_pool, nullptr, nullptr, block_table, context_lens, out, s, scale,
                   threads);
}

void paged_attention_forward_int8(const float *q, const float *k_new, const float *v_new, const int8_t *k_pool,
                                  const int8_t *v_pool, const float *k_scale, const float *v_scale,
                                  const int32_t *block_table, const int32_t *context_lens, float *out,
                                  const PagedAttentionShape &s, float scale, int threads) {
  run_paged<int8_t>(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_table, context_lens, out, s, scale,
                    threads);
}

}  // namespace mft::kernels
