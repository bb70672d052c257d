#include "kernels/swiglu.h"

#include "kernels/isa.h"
#include "kernels/parallel.h"
#include "kernels/tile_gemm.h"

namespace mft::kernels {
namespace {

using tile::lanes;
using tile::splat;
using tile::vexp_nonpos;
using tile::vload;
using tile::vstore;

// sigmoid(g) from exp(-|g|) (the exp argument is never positive, so it cannot overflow).
template <class V>
MFT_TILE_INLINE V vsigmoid(V g) {
  const V zero = V{};
  const V e = vexp_nonpos(g < zero ? g : -g);
  const V one = splat<V>(1.0f);
  return (g < zero ? e : one) / (one + e);
}

template <class V>
MFT_TILE_INLINE V load_n(const float *p, int count) {
  constexpr int W = lanes<V>;
  if (count == W) return vload<V>(p);
  float buf[W] = {};
  for (int k = 0; k < count; ++k) buf[k] = p[k];
  return vload<V>(buf);
}

template <class V>
MFT_TILE_INLINE void store_n(float *p, V v, int count) {
  constexpr int W = lanes<V>;
  if (count == W) return vstore(p, v);
  float buf[W];
  vstore(buf, v);
  for (int k = 0; k < count; ++k) p[k] = buf[k];
}

// Full vectors, then the tail through a zero-padded vector (no lambdas: their bodies would not get the
// caller's target attributes).
template <class V>
MFT_TILE_INLINE void forward_body(const float *gate, const float *up, int64_t n, float *out) {
  constexpr int W = lanes<V>;
  for (int64_t i = 0; i < n; i += W) {
    const int count = n - i < W ? static_cast<int>(n - i) : W;
    const V g = load_n<V>(gate + i, count);
    store_n(out + i, g * vsigmoid(g) * load_n<V>(up + i, count), count);
  }
}

template <class V>
MFT_TILE_INLINE void backward_body(const float *dout, const float *gate, const float *up, int64_t n, float *dgate,
                                   float *dup) {
  constexpr int W = lanes<V>;
  const V one = splat<V>(1.0f);
  for (int64_t i = 0; i < n; i += W) {
    const int count = n - i < W ? static_cast<int>(n - i) : W;
    const V g = load_n<V>(gate + i, count), u = load_n<V>(up + i, count), d = load_n<V>(dout + i, count);
    const V s = vsigmoid(g);
    store_n(dup + i, d * g * s, count);
    store_n(dgate + i, d * u * s * (one + g * (one - s)), count);
  }
}

#define MFT_SWIGLU_FWD(V) forward_body<V>(gate, up, n, out)
#define MFT_SWIGLU_BWD(V) backward_body<V>(dout, gate, up, n, dgate, dup)
MFT_ISA_DISPATCH(void, forward, (const float *gate, const float *up, int64_t n, float *out), MFT_SWIGLU_FWD)
MFT_ISA_DISPATCH(void, backward,
                 (const float *dout, const float *gate, const float *up, int64_t n, float *dgate, float *dup),
                 MFT_SWIGLU_BWD)

// Element ranges per thread, in multiples of 64 so every vector path splits identically.
constexpr int64_t kGrain = 64;

}  // namespace

void swiglu_forward(const float *gate, const float *up, int64_t n, float *out) {
  const auto f = forward_fn();
  const int64_t blocks = (n + kGrain - 1) / kGrain;
  parallel_rows(blocks, plan_threads(blocks, kGrain), [&](int64_t b, int64_t e, int) {
    const int64_t lo = b * kGrain, hi = e * kGrain < n ? e * kGrain : n;
    f(gate + lo, up + lo, hi - lo, out + lo);
  });
}

void swiglu_backward(const float *dout, const float *gate, const float *up, int64_t n, float *dgate, float *dup) {
  const auto f = backward_fn();
  const int64_t blocks = (n + kGrain - 1) / kGrain;
  parallel_rows(blocks, plan_threads(blocks, kGrain), [&](int64_t b, int64_t e, int) {
    const int64_t lo = b * kGrain, hi = e * kGrain < n ? e * kGrain : n;
    f(dout + lo, gate + lo, up + lo, hi - lo, dgate + lo, dup + lo);
  });
}

}  // namespace mft::kernels
