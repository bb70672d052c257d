// MindSpore aot entry points for rotary embedding (see python/mft/ops/rope.py).
//   MftRopeForward(x (B,N,S,D) f32, cos (Bc,1,S,D) f32, sin, mode (1,) i32) -> out (B,N,S,D)
//   MftRopeBackward(dout, cos, sin, mode) -> dx
// mode 0 = half (rotate_half) layout, 1 = interleaved (DeepSeek rope_interleave).
#include <cstring>
#include <exception>

#include "kernels/rope.h"
#include "mindspore_aot/aot_abi.h"

namespace {

namespace aot = mft::aot;

int run(bool backward, int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 5) return aot::kBadArgCount;
  for (int i : {0, 1, 2, 4}) {
    if (aot::parse_dtype(dtypes[i]) != aot::DType::kF32) return aot::kBadDtype;
  }
  if (dtypes[3] == nullptr || std::strcmp(dtypes[3], "int32") != 0) return aot::kBadDtype;
  if (ndims[0] != 4 || ndims[1] != 4 || aot::numel(ndims[3], shapes[3]) != 1) return aot::kBadShape;
  if (!aot::same_shape(ndims[1], shapes[1], ndims[2], shapes[2]) ||
      !aot::same_shape(ndims[0], shapes[0], ndims[4], shapes[4]))
    return aot::kBadShape;
  const int64_t *xs = shapes[0], *cs = shapes[1];
  mft::kernels::RopeShape s{xs[0], xs[1], xs[2], xs[3], cs[0]};
  if (cs[1] != 1 || cs[2] != s.seq || cs[3] != s.dim || !mft::kernels::check_rope_args(s).empty())
    return aot::kBadShape;
  const int32_t mode = *static_cast<const int32_t *>(params[3]);
  if (mode != 0 && mode != 1) return aot::kBadValue;
  const auto *in = static_cast<const float *>(params[0]);
  const auto *c = static_cast<const float *>(params[1]);
  const auto *sn = static_cast<const float *>(params[2]);
  auto *out = static_cast<float *>(params[4]);
  try {
    if (backward) {
      mft::kernels::rope_backward(in, c, sn, out, s, mode == 1);
    } else {
      mft::kernels::rope_forward(in, c, sn, out, s, mode == 1);
    }
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftRopeForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                  void *, void *) {
  return run(false, nparam, params, ndims, shapes, dtypes);
}

MFT_AOT_EXPORT int MftRopeBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                   void *, void *) {
  return run(true, nparam, params, ndims, shapes, dtypes);
}
