// Rotary position embedding, fp32, x (B, heads, S, D) with cos/sin
// (Bc, 1, S, D), Bc = 1 (positions shared by the batch) or B.
//
// Half layout (HF rotate_half):  out = x * cos + rotate_half(x) * sin,
//   rotate_half(x) = cat(-x[D/2:], x[:D/2]).
// Interleaved layout (DeepSeek rope_interleave): x's pairs (x0, x1), (x2, x3), ...
//   are first de-interleaved to (x0, x2, ..., x1, x3, ...), then rotated as
//   above; the output stays de-interleaved, as HF's apply does.
// The backward is the transpose: dx = dy * cos + rotate_half^T(dy * sin)
// (re-interleaved for the interleaved layout). cos/sin get no gradient.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

struct RopeShape {
  int64_t batch = 0, heads = 0, seq = 0, dim = 0;
  int64_t cos_batch = 1;  // 1 or batch
};

std::string check_rope_args(const RopeShape &s);

void rope_forward(const float *x, const float *cos, const float *sin, float *out, const RopeShape &s,
                  bool interleaved);

void rope_backward(const float *dout, const float *cos, const float *sin, float *dx, const RopeShape &s,
                   bool interleaved);

}  // namespace mft::kernels
