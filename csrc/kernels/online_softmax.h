// One step of the online softmax that flash attention runs over a row of
// scores, shared by the flash-attention forward (attention.cc) and the
// paged-attention kernel (paged_attention.cc).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/tile_gemm.h"

namespace mft::kernels::tile {

// sr[0, width) holds one row's scaled, masked scores of a key tile and mx
// their max together with the running max m (mx finite; width a multiple of
// lanes<V>). The row becomes p = exp(s - mx); the running output row
// acc[0, d) and sum l are rescaled by exp(m - mx) (1 when the max did not
// grow, the usual case after the first tiles; 0 on the row's first tile,
// m = -inf); l gains the sum of the p's and m becomes mx.
template <class V>
MFT_TILE_INLINE void online_softmax_step(float *sr, int64_t width, float mx, float &m, float &l, float *acc,
                                         int64_t d) {
  constexpr int W = lanes<V>;
  const float corr = mx == m ? 1.f : m == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(m - mx);
  V sum{};
  const V mxv = splat<V>(mx);
  for (int64_t c = 0; c < width; c += W) {
    const V p = vexp_nonpos(vload<V>(sr + c) - mxv);
    vstore<V>(sr + c, p);
    sum += p;
  }
  if (corr != 1.f) {
    for (int64_t x = 0; x < d; ++x) acc[x] *= corr;
  }
  l = l * corr + hsum(sum);
  m = mx;
}

}  // namespace mft::kernels::tile
