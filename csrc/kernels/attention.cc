#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "kernels/parallel.h"

namespace mft::kernels {
namespace {

// Query rows / key columns per tile: a 64x64 fp32 score tile (16 KB) plus the
// K/V tiles for D <= 128 stay in L1/L2.
constexpr int64_t kBr = 64;
constexpr int64_t kBc = 64;

#define MFT_INLINE static inline __attribute__((always_inline))

// exp(x) for x <= 0 (scores minus their running max), vectorisable: x = n ln2 + r,
// |r| <= ln2/2, degree-6 Taylor for e^r (rel. error ~1e-7), 2^n from the exponent bits.
MFT_INLINE float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = std::floor(x * 1.44269504f + 0.5f);
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

// Start of the document holding each position of one sample.
void doc_starts(const SeqEnds &e, int64_t b, int64_t seq, int64_t *start) {
  if (e.ends == nullptr) {
    std::fill(start, start + seq, 0);
    return;
  }
  const int32_t *row = e.ends + (e.rows == 1 ? 0 : b) * e.count;
  int64_t cur = 0, n = 0;
  for (int64_t i = 0; i < seq; ++i) {
    while (n < e.count && row[n] <= i) cur = row[n++];
    start[i] = cur;
  }
}

// dst (D x cols) = src (cols x D) transposed; dst row stride kBc.
MFT_INLINE void transpose_tile(const float *src, int64_t cols, int64_t d, float *dst) {
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t x = 0; x < d; ++x) dst[x * kBc + c] = src[c * d + x];
}

// s[0..cols) = q . kT[:, c]  (kT is D x kBc): axpy form, contiguous in c.
MFT_INLINE void row_scores(const float *__restrict__ q, const float *__restrict__ kT, int64_t d,
                           float *__restrict__ s) {
  float acc[kBc];
  for (int64_t c = 0; c < kBc; ++c) acc[c] = 0.f;
  for (int64_t x = 0; x < d; ++x) {
    const float qx = q[x];
    const float *kr = kT + x * kBc;
    for (int64_t c = 0; c < kBc; ++c) acc[c] += qx * kr[c];
  }
  for (int64_t c = 0; c < kBc; ++c) s[c] = acc[c];
}

MFT_INLINE void axpy(float a, const float *__restrict__ x, float *__restrict__ y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

MFT_INLINE void forward_head(const float *q, const float *k, const float *v, float *out, float *lse,
                             int64_t seq, int64_t d, float scale, const int64_t *start,
                             float *kT, float *s, float *acc, float *m, float *l) {
  for (int64_t i0 = 0; i0 < seq; i0 += kBr) {
    const int64_t rows = std::min(kBr, seq - i0);
    for (int64_t r = 0; r < rows; ++r) {
      m[r] = -std::numeric_limits<float>::infinity();
      l[r] = 0.f;
    }
    std::fill(acc, acc + rows * d, 0.f);
    const int64_t jend = i0 + rows;  // causal: no key after the tile's last query
    for (int64_t j0 = start[i0]; j0 < jend; j0 += kBc) {
      const int64_t cols = std::min(kBc, jend - j0);
      transpose_tile(k + j0 * d, cols, d, kT);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        const int64_t c0 = std::max<int64_t>(0, start[i] - j0);
        const int64_t c1 = std::min(cols, i - j0 + 1);
        if (c1 <= c0) continue;
        float *sr = s + r * kBc;
        row_scores(q + i * d, kT, d, sr);
        float mx = m[r];
        for (int64_t c = c0; c < c1; ++c) {
          sr[c] *= scale;
          mx = std::max(mx, sr[c]);
        }
        const float corr = exp_nonpos(m[r] - mx);  // exp(-inf) -> ~0 on the first tile
        float sum = 0.f;
        for (int64_t c = c0; c < c1; ++c) {
          sr[c] = exp_nonpos(sr[c] - mx);
          sum += sr[c];
        }
        float *ar = acc + r * d;
        if (corr != 1.f) {
          for (int64_t x = 0; x < d; ++x) ar[x] *= corr;
        }
        l[r] = l[r] * corr + sum;
        m[r] = mx;
        const float *vt = v + j0 * d;
        for (int64_t c = c0; c < c1; ++c) axpy(sr[c], vt + c * d, ar, d);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.f / l[r];
      float *o = out + (i0 + r) * d;
      for (int64_t x = 0; x < d; ++x) o[x] = acc[r * d + x] * inv;
      lse[i0 + r] = m[r] + std::log(l[r]);
    }
  }
}

// One kv head and the n_rep query heads sharing it. dq (n_rep heads) must be zeroed.
MFT_INLINE void backward_group(const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse, float *dq, float *dk, float *dv,
                               int64_t n_rep, int64_t seq, int64_t d, float scale,
                               const int64_t *start, float *kT, float *vT, float *p, float *dp,
                               float *dk_acc, float *dv_acc, float *delta) {
  const int64_t head = seq * d;
  // delta_i = dout_i . out_i for every query head of the group.
  for (int64_t h = 0; h < n_rep; ++h)
    for (int64_t i = 0; i < seq; ++i) {
      const float *a = dout + h * head + i * d, *b = out + h * head + i * d;
      float t = 0.f;
      for (int64_t x = 0; x < d; ++x) t += a[x] * b[x];
      delta[h * seq + i] = t;
    }
  for (int64_t j0 = 0; j0 < seq; j0 += kBc) {
    const int64_t cols = std::min(kBc, seq - j0);
    transpose_tile(k + j0 * d, cols, d, kT);
    transpose_tile(v + j0 * d, cols, d, vT);
    std::fill(dk_acc, dk_acc + cols * d, 0.f);
    std::fill(dv_acc, dv_acc + cols * d, 0.f);
    const float *kt = k + j0 * d;
    for (int64_t h = 0; h < n_rep; ++h) {
      const float *qh = q + h * head, *doh = dout + h * head;
      const float *lh = lse + h * seq, *dh = delta + h * seq;
      float *dqh = dq + h * head;
      // Queries before j0 cannot see this tile; starts are non-decreasing, so stop
      // at the first query whose document begins after the tile.
      for (int64_t i = j0; i < seq && start[i] < j0 + cols; ++i) {
        const int64_t c0 = std::max<int64_t>(0, start[i] - j0);
        const int64_t c1 = std::min(cols, i - j0 + 1);
        if (c1 <= c0) continue;
        row_scores(qh + i * d, kT, d, p);
        row_scores(doh + i * d, vT, d, dp);
        const float li = lh[i], di = dh[i];
        const float *doi = doh + i * d, *qi = qh + i * d;
        float *dqi = dqh + i * d;
        for (int64_t c = c0; c < c1; ++c) {
          const float pc = exp_nonpos(p[c] * scale - li);
          const float ds = pc * (dp[c] - di) * scale;
          axpy(pc, doi, dv_acc + c * d, d);
          axpy(ds, qi, dk_acc + c * d, d);
          axpy(ds, kt + c * d, dqi, d);
        }
      }
    }
    std::memcpy(dk + j0 * d, dk_acc, sizeof(float) * cols * d);
    std::memcpy(dv + j0 * d, dv_acc, sizeof(float) * cols * d);
  }
}

// The same bodies compiled twice: for AVX2+FMA CPUs and for baseline x86-64 /
// other architectures, chosen at run time, so the wheel runs on any CPU.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void forward_head_avx2(
    const float *q, const float *k, const float *v, float *out, float *lse, int64_t seq, int64_t d,
    float scale, const int64_t *start, float *kT, float *s, float *acc, float *m, float *l) {
  forward_head(q, k, v, out, lse, seq, d, scale, start, kT, s, acc, m, l);
}
__attribute__((target("avx2,fma"))) void backward_group_avx2(
    const float *dout, const float *q, const float *k, const float *v, const float *out,
    const float *lse, float *dq, float *dk, float *dv, int64_t n_rep, int64_t seq, int64_t d,
    float scale, const int64_t *start, float *kT, float *vT, float *p, float *dp, float *dk_acc,
    float *dv_acc, float *delta) {
  backward_group(dout, q, k, v, out, lse, dq, dk, dv, n_rep, seq, d, scale, start, kT, vT, p, dp,
                 dk_acc, dv_acc, delta);
}
bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("MFT_KERNEL_NO_AVX2") == nullptr;
  return yes;
}
#else
bool use_avx2() { return false; }
#define forward_head_avx2 forward_head_generic
#define backward_group_avx2 backward_group_generic
#endif

void forward_head_generic(const float *q, const float *k, const float *v, float *out, float *lse,
                          int64_t seq, int64_t d, float scale, const int64_t *start, float *kT,
                          float *s, float *acc, float *m, float *l) {
  forward_head(q, k, v, out, lse, seq, d, scale, start, kT, s, acc, m, l);
}
void backward_group_generic(const float *dout, const float *q, const float *k, const float *v,
                            const float *out, const float *lse, float *dq, float *dk, float *dv,
                            int64_t n_rep, int64_t seq, int64_t d, float scale,
                            const int64_t *start, float *kT, float *vT, float *p, float *dp,
                            float *dk_acc, float *dv_acc, float *delta) {
  backward_group(dout, q, k, v, out, lse, dq, dk, dv, n_rep, seq, d, scale, start, kT, vT, p, dp,
                 dk_acc, dv_acc, delta);
}

int threads_for(int64_t tasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(attention_threads(), tasks)));
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
  if (e.ends == nullptr) return "";
  if (e.rows != 1 && e.rows != s.batch) return "seq_ends must have 1 or batch rows";
  for (int64_t r = 0; r < e.rows; ++r) {
    int32_t prev = 0;
    for (int64_t n = 0; n < e.count; ++n) {
      const int32_t x = e.ends[r * e.count + n];
      if (x < prev || x > s.seq) return "seq_ends rows must be non-decreasing and within [0, seq]";
      prev = x;
    }
  }
  return "";
}

void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                       const AttentionShape &s, float scale, const SeqEnds &ends) {
  const int64_t tasks = s.batch * s.heads, n_rep = s.heads / s.kv_heads;
  const int64_t head = s.seq * s.dim;
  const bool avx2 = use_avx2();
  parallel_rows(tasks, threads_for(tasks), [&](int64_t begin, int64_t end, int) {
    std::vector<int64_t> start(s.seq);
    std::vector<float> kT(s.dim * kBc), sc(kBr * kBc), acc(kBr * s.dim), m(kBr), l(kBr);
    int64_t cur_b = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / s.heads, h = t % s.heads, kvh = b * s.kv_heads + h / n_rep;
      if (b != cur_b) doc_starts(ends, b, s.seq, start.data()), cur_b = b;
      auto *fn = avx2 ? forward_head_avx2 : forward_head_generic;
      fn(q + t * head, k + kvh * head, v + kvh * head, out + t * head, lse + t * s.seq, s.seq,
         s.dim, scale, start.data(), kT.data(), sc.data(), acc.data(), m.data(), l.data());
    }
  });
}

void attention_backward(const float *dout, const float *q, const float *k, const float *v,
                        const float *out, const float *lse, float *dq, float *dk, float *dv,
                        const AttentionShape &s, float scale, const SeqEnds &ends) {
  const int64_t tasks = s.batch * s.kv_heads, n_rep = s.heads / s.kv_heads;
  const int64_t head = s.seq * s.dim;
  const bool avx2 = use_avx2();
  parallel_rows(tasks, threads_for(tasks), [&](int64_t begin, int64_t end, int) {
    std::vector<int64_t> start(s.seq);
    std::vector<float> kT(s.dim * kBc), vT(s.dim * kBc), p(kBc), dp(kBc);
    std::vector<float> dk_acc(kBc * s.dim), dv_acc(kBc * s.dim), delta(n_rep * s.seq);
    int64_t cur_b = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / s.kv_heads;
      const int64_t qh = t * n_rep;  // first query head of this group (b*H + g*n_rep)
      if (b != cur_b) doc_starts(ends, b, s.seq, start.data()), cur_b = b;
      std::fill(dq + qh * head, dq + (qh + n_rep) * head, 0.f);
      auto *fn = avx2 ? backward_group_avx2 : backward_group_generic;
      fn(dout + qh * head, q + qh * head, k + t * head, v + t * head, out + qh * head,
         lse + qh * s.seq, dq + qh * head, dk + t * head, dv + t * head, n_rep, s.seq, s.dim,
         scale, start.data(), kT.data(), vT.data(), p.data(), dp.data(), dk_acc.data(),
         dv_acc.data(), delta.data());
    }
  });
}

}  // namespace mft::kernels
