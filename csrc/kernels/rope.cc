#include "kernels/rope.h"

#include "kernels/parallel.h"

namespace mft::kernels {
namespace {

// Calls fn(row pointer offset, cos/sin offset) for every (b, head, position) row.
template <typename Fn>
void for_rows(const RopeShape &s, Fn fn) {
  const int64_t rows = s.batch * s.heads * s.seq;
  parallel_rows(rows, plan_threads(rows, s.dim * 4), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t pos = r % s.seq, b = r / (s.heads * s.seq);
      const int64_t cb = s.cos_batch == 1 ? 0 : b;
      fn(r * s.dim, (cb * s.seq + pos) * s.dim);
    }
  });
}

}  // namespace

std::string check_rope_args(const RopeShape &s) {
  if (s.batch < 0 || s.heads < 0 || s.seq < 0) return "x must be (batch, heads, seq, head_dim)";
  if (s.dim <= 0 || s.dim % 2 != 0) return "head_dim must be even and positive";
  if (s.cos_batch != 1 && s.cos_batch != s.batch) return "cos/sin batch must be 1 or x's batch";
  return "";
}

void rope_forward(const float *x, const float *cos, const float *sin, float *out, const RopeShape &s,
                  bool interleaved) {
  const int64_t h = s.dim / 2;
  for_rows(s, [&](int64_t xo, int64_t co) {
    const float *xr = x + xo, *c = cos + co, *sn = sin + co;
    float *o = out + xo;
    for (int64_t j = 0; j < h; ++j) {
      // (a, b) = the pair rotated by frequency j: x[j], x[j+h] or, interleaved, x[2j], x[2j+1].
      const float a = interleaved ? xr[2 * j] : xr[j];
      const float b = interleaved ? xr[2 * j + 1] : xr[j + h];
      o[j] = a * c[j] - b * sn[j];
      o[j + h] = b * c[j + h] + a * sn[j + h];
    }
  });
}

void rope_backward(const float *dout, const float *cos, const float *sin, float *dx, const RopeShape &s,
                   bool interleaved) {
  const int64_t h = s.dim / 2;
  for_rows(s, [&](int64_t xo, int64_t co) {
    const float *g = dout + xo, *c = cos + co, *sn = sin + co;
    float *d = dx + xo;
    for (int64_t j = 0; j < h; ++j) {
      const float da = g[j] * c[j] + g[j + h] * sn[j + h];
      const float db = g[j + h] * c[j + h] - g[j] * sn[j];
      if (interleaved) {
        d[2 * j] = da;
        d[2 * j + 1] = db;
      } else {
        d[j] = da;
        d[j + h] = db;
      }
    }
  });
}

}  // namespace mft::kernels
