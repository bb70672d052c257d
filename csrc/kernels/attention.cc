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

// dst (D x kBc) = src (cols x D) transposed, columns >= cols zeroed.
MFT_INLINE void transpose_tile(const float *src, int64_t cols, int64_t d, float *dst) {
  for (int64_t x = 0; x < d; ++x) {
    for (int64_t c = 0; c < cols; ++c) dst[x * kBc + c] = src[c * d + x];
    for (int64_t c = cols; c < kBc; ++c) dst[x * kBc + c] = 0.f;
  }
}

// 8 floats in a GCC vector: one ymm register with AVX2, two xmm without.
typedef float v8 __attribute__((vector_size(32)));
MFT_INLINE v8 ld8(const float *p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
MFT_INLINE void st8(float *p, v8 v) { std::memcpy(p, &v, sizeof v); }

// C[m][n] += sum_k A(m, k) * B[k][n], A(m, k) = a[m * am + k * ak] (so A may be a
// transposed view), B row stride ldb, C row stride ldc. Register blocks of
// 2 rows x 32 columns (8 independent accumulators: enough to hide FMA latency)
// keep C in registers across the whole k loop; B rows are read contiguously.
MFT_INLINE void gemm_acc(const float *__restrict__ a, int64_t am, int64_t ak, const float *__restrict__ b,
                         int64_t ldb, float *__restrict__ c, int64_t ldc, int64_t m, int64_t k, int64_t n) {
  int64_t n0 = 0;
  for (; n0 + 32 <= n; n0 += 32) {
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
      float *c0 = c + i * ldc + n0, *c1 = c0 + ldc;
      v8 x0 = ld8(c0), x1 = ld8(c0 + 8), x2 = ld8(c0 + 16), x3 = ld8(c0 + 24);
      v8 y0 = ld8(c1), y1 = ld8(c1 + 8), y2 = ld8(c1 + 16), y3 = ld8(c1 + 24);
      const float *a0 = a + i * am, *a1 = a0 + am;
      for (int64_t p = 0; p < k; ++p) {
        const float *br = b + p * ldb + n0;
        const v8 b0 = ld8(br), b1 = ld8(br + 8), b2 = ld8(br + 16), b3 = ld8(br + 24);
        const float s0 = a0[p * ak], s1 = a1[p * ak];
        x0 += s0 * b0, x1 += s0 * b1, x2 += s0 * b2, x3 += s0 * b3;
        y0 += s1 * b0, y1 += s1 * b1, y2 += s1 * b2, y3 += s1 * b3;
      }
      st8(c0, x0), st8(c0 + 8, x1), st8(c0 + 16, x2), st8(c0 + 24, x3);
      st8(c1, y0), st8(c1 + 8, y1), st8(c1 + 16, y2), st8(c1 + 24, y3);
    }
    for (; i < m; ++i) {
      float *c0 = c + i * ldc + n0;
      v8 x0 = ld8(c0), x1 = ld8(c0 + 8), x2 = ld8(c0 + 16), x3 = ld8(c0 + 24);
      const float *a0 = a + i * am;
      for (int64_t p = 0; p < k; ++p) {
        const float *br = b + p * ldb + n0;
        const float s0 = a0[p * ak];
        x0 += s0 * ld8(br), x1 += s0 * ld8(br + 8), x2 += s0 * ld8(br + 16), x3 += s0 * ld8(br + 24);
      }
      st8(c0, x0), st8(c0 + 8, x1), st8(c0 + 16, x2), st8(c0 + 24, x3);
    }
  }
  for (; n0 + 8 <= n; n0 += 8) {
    for (int64_t i = 0; i < m; ++i) {
      float *c0 = c + i * ldc + n0;
      v8 x0 = ld8(c0);
      for (int64_t p = 0; p < k; ++p) x0 += a[i * am + p * ak] * ld8(b + p * ldb + n0);
      st8(c0, x0);
    }
  }
  for (; n0 < n; ++n0) {
    for (int64_t i = 0; i < m; ++i) {
      float t = c[i * ldc + n0];
      for (int64_t p = 0; p < k; ++p) t += a[i * am + p * ak] * b[p * ldb + n0];
      c[i * ldc + n0] = t;
    }
  }
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
      std::fill(s, s + rows * kBc, 0.f);
      gemm_acc(q + i0 * d, d, 1, kT, kBc, s, kBc, rows, d, kBc);  // S = Q K^T
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        const int64_t c0 = std::max<int64_t>(0, start[i] - j0);
        const int64_t c1 = std::min(cols, i - j0 + 1);
        float *sr = s + r * kBc;
        if (c1 <= c0) {
          std::fill(sr, sr + kBc, 0.f);
          continue;
        }
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
        for (int64_t c = 0; c < c0; ++c) sr[c] = 0.f;
        for (int64_t c = c1; c < kBc; ++c) sr[c] = 0.f;
        if (corr != 1.f) {
          float *ar = acc + r * d;
          for (int64_t x = 0; x < d; ++x) ar[x] *= corr;
        }
        l[r] = l[r] * corr + sum;
        m[r] = mx;
      }
      gemm_acc(s, kBc, 1, v + j0 * d, d, acc, d, rows, cols, d);  // acc += P V
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
// p and dp are kBr x kBc tiles.
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
    for (int64_t h = 0; h < n_rep; ++h) {
      const float *qh = q + h * head, *doh = dout + h * head;
      const float *lh = lse + h * seq, *dh = delta + h * seq;
      float *dqh = dq + h * head;
      // Query tiles before j0 cannot see this key tile; starts are non-decreasing,
      // so stop at the first tile whose documents all begin after it.
      for (int64_t i0 = (j0 / kBr) * kBr; i0 < seq && start[i0] < j0 + cols; i0 += kBr) {
        const int64_t rows = std::min(kBr, seq - i0);
        std::fill(p, p + rows * kBc, 0.f);
        std::fill(dp, dp + rows * kBc, 0.f);
        gemm_acc(qh + i0 * d, d, 1, kT, kBc, p, kBc, rows, d, kBc);    // S = Q K^T
        gemm_acc(doh + i0 * d, d, 1, vT, kBc, dp, kBc, rows, d, kBc);  // dP = dO V^T
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          // Valid keys [c0, c1) of this row (empty for rows before j0 or in a later document).
          const int64_t c0 = std::min(cols, std::max<int64_t>(0, start[i] - j0));
          const int64_t c1 = std::max(c0, std::min(cols, i - j0 + 1));
          float *pr = p + r * kBc, *dpr = dp + r * kBc;
          const float li = lh[i], di = dh[i];
          for (int64_t c = 0; c < c0; ++c) pr[c] = dpr[c] = 0.f;
          for (int64_t c = c0; c < c1; ++c) {
            const float pc = exp_nonpos(pr[c] * scale - li);
            pr[c] = pc;
            dpr[c] = pc * (dpr[c] - di) * scale;  // dS (scaled for dQ, dK)
          }
          for (int64_t c = c1; c < kBc; ++c) pr[c] = dpr[c] = 0.f;
        }
        gemm_acc(p, 1, kBc, doh + i0 * d, d, dv_acc, d, cols, rows, d);   // dV += P^T dO
        gemm_acc(dp, 1, kBc, qh + i0 * d, d, dk_acc, d, cols, rows, d);   // dK += dS^T Q
        gemm_acc(dp, kBc, 1, k + j0 * d, d, dqh + i0 * d, d, rows, cols, d);  // dQ += dS K
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
    std::vector<float> kT(s.dim * kBc), vT(s.dim * kBc), p(kBr * kBc), dp(kBr * kBc);
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
