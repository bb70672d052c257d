// Checks the flash attention kernels against a naive double-precision double
// loop (full score matrix, masked softmax): plain causal, GQA, a sequence
// that is not a multiple of the tile size, and packed documents (shared and
// per-row ends, including an empty document). Forward out + lse, backward
// dq, dk, dv, head dims 64/80/96/128 and one that is not a multiple of the
// vector width, bidirectional (non-causal) documents as vision encoders use,
// and that 1, 2 and 3 threads give bit-identical results. Query offsets
// (context parallelism): S queries at positions [q_offset, q_offset + S) of
// L >= q_offset + S keys, causal and bidirectional, packed, across tiles.
// Also checks that bad shapes/ends are rejected.
// Exit status 0 = all passed; failures print what differed.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>
#include <random>
#include <vector>

#include "kernels/attention.h"

namespace {

using mft::kernels::AttentionShape;
using mft::kernels::SeqEnds;

int g_failures = 0;

void expect_close(const char *what, size_t i, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    if (++g_failures <= 20) std::printf("FAIL %s[%zu]: got %.9g want %.9g\n", what, i, got, want);
  }
}

// Document id of position p in batch row b: number of ends <= p.
int64_t doc_of(const SeqEnds &e, int64_t b, int64_t p) {
  if (e.ends == nullptr) return 0;
  const int32_t *row = e.ends + (e.rows == 1 ? 0 : b) * e.count;
  int64_t d = 0;
  for (int64_t i = 0; i < e.count; ++i) d += row[i] <= p;
  return d;
}

struct Result {
  std::vector<double> out, lse, dq, dk, dv;
};

Result naive(const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
             const std::vector<float> &dout, const AttentionShape &s, double scale, const SeqEnds &e) {
  // S queries at positions off + i of L keys.
  const int64_t B = s.batch, H = s.heads, KV = s.kv_heads, S = s.seq, D = s.dim, rep = H / KV;
  const int64_t L = s.kv_seq > 0 ? s.kv_seq : S, off = s.q_offset;
  Result r;
  r.out.assign(B * H * S * D, 0);
  r.lse.assign(B * H * S, 0);
  r.dq.assign(B * H * S * D, 0);
  r.dk.assign(B * KV * L * D, 0);
  r.dv.assign(B * KV * L * D, 0);
  std::vector<double> p(L), dp(L);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / rep;
      const float *qh = &q[((b * H + h) * S) * D];
      const float *kk = &k[((b * KV + kh) * L) * D];
      const float *vv = &v[((b * KV + kh) * L) * D];
      for (int64_t i = 0; i < S; ++i) {
        const int64_t pos = off + i;
        double m = -INFINITY;
        for (int64_t j = 0; j < L; ++j) {
          p[j] = -INFINITY;
          if ((s.causal && j > pos) || doc_of(e, b, j) != doc_of(e, b, pos)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(qh[i * D + d]) * kk[j * D + d];
          p[j] = dot * scale;
          m = std::max(m, p[j]);
        }
        double l = 0;
        for (int64_t j = 0; j < L; ++j) l += (p[j] = std::exp(p[j] - m));
        for (int64_t j = 0; j < L; ++j) p[j] /= l;
        r.lse[(b * H + h) * S + i] = m + std::log(l);
        double *o = &r.out[((b * H + h) * S + i) * D];
        for (int64_t j = 0; j < L; ++j)
          for (int64_t d = 0; d < D; ++d) o[d] += p[j] * vv[j * D + d];
        // Backward of this row: dp = dout . v_j, ds = p (dp - dout . out).
        const float *g = &dout[((b * H + h) * S + i) * D];
        double go = 0;
        for (int64_t d = 0; d < D; ++d) go += g[d] * o[d];
        for (int64_t j = 0; j < L; ++j) {
          if (p[j] == 0) continue;
          double dpj = 0;
          for (int64_t d = 0; d < D; ++d) dpj += double(g[d]) * vv[j * D + d];
          const double ds = p[j] * (dpj - go) * scale;
          for (int64_t d = 0; d < D; ++d) {
            r.dq[((b * H + h) * S + i) * D + d] += ds * kk[j * D + d];
            r.dk[((b * KV + kh) * L + j) * D + d] += ds * qh[i * D + d];
            r.dv[((b * KV + kh) * L + j) * D + d] += p[j] * g[d];
          }
        }
      }
    }
  return r;
}

void check_case(const char *name, AttentionShape s, std::vector<int32_t> ends, int64_t ends_rows, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto fill = [&](int64_t n) {
    std::vector<float> a(n);
    for (auto &x : a) x = normal(rng);
    return a;
  };
  const int64_t nq = s.batch * s.heads * s.seq * s.dim, nk = s.batch * s.kv_heads * s.keys() * s.dim;
  const auto q = fill(nq), k = fill(nk), v = fill(nk), dout = fill(nq);
  SeqEnds e;
  if (!ends.empty()) e = SeqEnds{ends.data(), ends_rows, static_cast<int64_t>(ends.size()) / ends_rows};
  const std::string err = mft::kernels::check_attention_args(s, e);
  if (!err.empty()) {
    ++g_failures;
    std::printf("FAIL %s: valid case rejected: %s\n", name, err.c_str());
    return;
  }
  const float scale = 1.f / std::sqrt(static_cast<float>(s.dim));
  std::vector<float> out(nq), lse(nq / s.dim), dq(nq), dk(nk), dv(nk);
  mft::kernels::attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s, scale, e);
  mft::kernels::attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq.data(),
                                   dk.data(), dv.data(), s, scale, e);
  const Result want = naive(q, k, v, dout, s, scale, e);
  char what[96];
  auto cmp = [&](const char *field, const std::vector<float> &got, const std::vector<double> &ref, double atol) {
    std::snprintf(what, sizeof what, "%s %s", name, field);
    for (size_t i = 0; i < got.size(); ++i) expect_close(what, i, got[i], ref[i], atol, 1e-4);
  };
  cmp("out", out, want.out, 1e-5);
  cmp("lse", lse, want.lse, 1e-5);
  cmp("dq", dq, want.dq, 1e-4);
  cmp("dk", dk, want.dk, 1e-4);
  cmp("dv", dv, want.dv, 1e-4);
  // Bit-identical for any thread count: each output element has one owner.
  for (int threads : {1, 2, 3}) {
    std::vector<float> out2(nq), lse2(nq / s.dim), dq2(nq), dk2(nk), dv2(nk);
    mft::kernels::attention_forward(q.data(), k.data(), v.data(), out2.data(), lse2.data(), s, scale, e, threads);
    mft::kernels::attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq2.data(),
                                     dk2.data(), dv2.data(), s, scale, e, threads);
    const std::pair<const std::vector<float> *, const std::vector<float> *> pairs[] = {
        {&out, &out2}, {&lse, &lse2}, {&dq, &dq2}, {&dk, &dk2}, {&dv, &dv2}};
    for (const auto &pr : pairs)
      if (std::memcmp(pr.first->data(), pr.second->data(), sizeof(float) * pr.first->size()) != 0) {
        ++g_failures;
        std::printf("FAIL %s: results with %d thread(s) differ from the default thread count\n", name, threads);
        break;
      }
  }
}

void check_rejects() {
  const std::vector<int32_t> decreasing = {5, 3};
  struct Bad {
    const char *what;
    AttentionShape s;
    SeqEnds e;
  } bad[] = {
      {"heads not a multiple of kv_heads", {1, 3, 2, 8, 4}, {}},
      {"zero kv_heads", {1, 2, 0, 8, 4}, {}},
      {"decreasing ends", {1, 2, 2, 8, 4}, {decreasing.data(), 1, 2}},
      {"end past seq", {1, 2, 2, 4, 4}, {decreasing.data(), 1, 1}},
      {"ends rows not 1 or batch", {3, 2, 2, 8, 4}, {decreasing.data(), 2, 1}},
      {"queries past the keys", {1, 2, 2, 8, 4, true, 10, 3}, {}},
      {"fewer keys than queries", {1, 2, 2, 8, 4, true, 6, 0}, {}},
      {"negative offset", {1, 2, 2, 8, 4, true, 10, -1}, {}},
      {"end past kv_seq", {1, 2, 2, 4, 4, true, 4, 0}, {decreasing.data(), 1, 1}},
  };
  for (const Bad &b : bad) {
    if (mft::kernels::check_attention_args(b.s, b.e).empty() && ++g_failures <= 20)
      std::printf("FAIL not rejected: %s\n", b.what);
  }
}

}  // namespace

int main() {
  check_rejects();
  check_case("causal", {1, 2, 2, 9, 8}, {}, 1, 1);
  check_case("gqa seq>tile", {2, 4, 2, 70, 16}, {}, 1, 2);
  check_case("gqa 4:1", {1, 4, 1, 33, 32}, {}, 1, 3);
  check_case("packed shared", {2, 2, 1, 40, 8}, {7, 7, 25}, 1, 4);  // includes an empty document
  check_case("packed per-row", {2, 4, 2, 67, 16}, {10, 30, 67, 64, 64, 64}, 2, 5);
  // Head dims of real models (64 = 2x32 lanes, 80 and 96 leave a 16-lane block,
  // 128), sequences that end mid-tile and mid-register-block, GQA ratios.
  check_case("d64 seq 129", {1, 2, 1, 129, 64}, {}, 1, 6);
  check_case("d80 gqa 3:1", {1, 3, 1, 100, 80}, {}, 1, 7);
  check_case("d96 packed", {2, 4, 2, 150, 96}, {50, 77, 150, 64, 140, 140}, 2, 8);
  check_case("d128 gqa 4:1", {1, 8, 2, 77, 128}, {}, 1, 9);
  check_case("d20 odd lanes", {1, 2, 2, 45, 20}, {3, 3}, 1, 10);
  // Longer than one forward task (512 query rows): documents across task edges.
  check_case("multi-task packed", {1, 3, 1, 1100, 8}, {300, 700}, 1, 11);
  // Bidirectional within documents (vision encoders): keys after the query count too.
  check_case("bidirectional", {1, 2, 2, 9, 8, false}, {}, 1, 12);
  check_case("bidir gqa seq>tile", {2, 4, 2, 70, 16, false}, {}, 1, 13);
  check_case("bidir packed per-row", {2, 4, 2, 150, 96, false}, {50, 77, 150, 64, 140, 140}, 2, 14);
  check_case("bidir windows across tasks", {1, 2, 1, 1100, 8, false}, {64, 300, 330, 700}, 1, 15);
  // Query offsets: a chunk of queries at positions [q_offset, q_offset + seq) against the keys up to
  // its end (context parallelism's prefix problems), offsets inside and across tiles, keys past
  // the last query (never seen: zero dk, dv), GQA, packing, bidirectional, more than one task.
  check_case("offset prefix", {1, 2, 2, 16, 8, true, 48, 32}, {}, 1, 16);
  check_case("offset mid-tile gqa", {2, 4, 2, 70, 16, true, 170, 100}, {}, 1, 17);
  check_case("offset keys after", {1, 2, 1, 40, 32, true, 150, 30}, {}, 1, 18);
  check_case("offset zero longer keys", {1, 2, 2, 20, 8, true, 90, 0}, {}, 1, 19);
  check_case("offset packed per-row", {2, 4, 2, 60, 16, true, 160, 77}, {50, 90, 160, 100, 100, 130}, 2, 20);
  check_case("offset bidir packed", {1, 2, 1, 50, 8, false, 140, 45}, {30, 80, 120}, 1, 21);
  check_case("offset d96 gqa 3:1", {1, 3, 1, 65, 96, true, 200, 135}, {}, 1, 22);
  check_case("offset multi-task", {1, 2, 1, 600, 8, true, 1300, 700}, {}, 1, 23);
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("attention: all checks passed\n");
  return 0;
}
