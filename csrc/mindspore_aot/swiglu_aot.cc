// MindSpore aot entry points for the fused SwiGLU activation (see python/mft/ops/swiglu.py).
//   MftSwigluForward(gate, up) -> out;  MftSwigluBackward(dout, gate, up) -> (dgate, dup)
// All float32 and of one shape.
#include <exception>

#include "kernels/swiglu.h"
#include "mindspore_aot/aot_abi.h"

namespace {

// Inputs [0, n_inputs) and the outputs after them: float32, all of input 0's shape.
int check(int nparam, int *ndims, int64_t **shapes, const char **dtypes) {
  for (int i = 0; i < nparam; ++i) {
    if (mft::aot::parse_dtype(dtypes[i]) != mft::aot::DType::kF32) return mft::aot::kBadDtype;
    if (!mft::aot::same_shape(ndims[i], shapes[i], ndims[0], shapes[0])) return mft::aot::kBadShape;
  }
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftSwigluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                    void * /*stream*/, void * /*extra*/) {
  if (nparam != 3) return mft::aot::kBadArgCount;
  const int status = check(nparam, ndims, shapes, dtypes);
  if (status != mft::aot::kOk) return status;
  try {
    mft::kernels::swiglu_forward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                 mft::aot::numel(ndims[0], shapes[0]), static_cast<float *>(params[2]));
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}

MFT_AOT_EXPORT int MftSwigluBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void * /*stream*/, void * /*extra*/) {
  if (nparam != 5) return mft::aot::kBadArgCount;
  const int status = check(nparam, ndims, shapes, dtypes);
  if (status != mft::aot::kOk) return status;
  try {
    mft::kernels::swiglu_backward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                  static_cast<const float *>(params[2]), mft::aot::numel(ndims[0], shapes[0]),
                                  static_cast<float *>(params[3]), static_cast<float *>(params[4]));
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}
