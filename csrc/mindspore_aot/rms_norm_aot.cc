// MindSpore aot entry points for the fused RMSNorm (see python/mft/ops/rms_norm.py).
//   MftRmsNormForward(x, weight, eps[1] fp32) -> y
//   MftRmsNormBackward(dy, x, weight, eps[1] fp32) -> (dx, dweight)
// eps travels as a one-element fp32 tensor: aot attributes go through a C++
// class whose ABI is tied to MindSpore's build, a tensor input is plain memory.
#include <exception>

#include "kernels/rms_norm.h"
#include "mindspore_aot/aot_abi.h"

namespace {

using mft::aot::DType;
using mft::kernels::Half;

struct RmsNormArgs {
  int64_t rows = 0;
  int64_t hidden = 0;
  float eps = 0.f;
  DType x_type = DType::kOther;
  DType w_type = DType::kOther;
};

// Checks x (index ix), weight (ix+1), eps (ix+2) and fills args.
int check_inputs(int ix, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                 RmsNormArgs *args) {
  const int iw = ix + 1, ie = ix + 2;
  args->x_type = mft::aot::parse_dtype(dtypes[ix]);
  args->w_type = mft::aot::parse_dtype(dtypes[iw]);
  if (args->x_type == DType::kOther || args->w_type == DType::kOther ||
      mft::aot::parse_dtype(dtypes[ie]) != DType::kF32) {
    return mft::aot::kBadDtype;
  }
  if (ndims[ix] < 1 || ndims[iw] != 1 || mft::aot::numel(ndims[ie], shapes[ie]) != 1) {
    return mft::aot::kBadShape;
  }
  args->hidden = shapes[ix][ndims[ix] - 1];
  if (args->hidden != shapes[iw][0] || args->hidden <= 0) return mft::aot::kBadShape;
  args->rows = mft::aot::numel(ndims[ix], shapes[ix]) / args->hidden;
  args->eps = *static_cast<const float *>(params[ie]);
  return mft::aot::kOk;
}

template <typename X, typename W>
struct Forward {
  static void run(void **p, const RmsNormArgs &a) {
    mft::kernels::rms_norm_forward<X, W>(static_cast<const X *>(p[0]), static_cast<const W *>(p[1]),
                                         static_cast<X *>(p[3]), a.rows, a.hidden, a.eps);
  }
};

template <typename X, typename W>
struct Backward {
  static void run(void **p, const RmsNormArgs &a) {
    mft::kernels::rms_norm_backward<X, W>(
        static_cast<const X *>(p[0]), static_cast<const X *>(p[1]), static_cast<const W *>(p[2]),
        static_cast<X *>(p[4]), static_cast<W *>(p[5]), a.rows, a.hidden, a.eps);
  }
};

// Runs Fn<X, W>::run for the (x, weight) dtype pair in args.
template <template <typename, typename> class Fn>
void dispatch(void **params, const RmsNormArgs &a) {
  const bool x16 = a.x_type == DType::kF16, w16 = a.w_type == DType::kF16;
  if (!x16 && !w16) {
    Fn<float, float>::run(params, a);
  } else if (!x16 && w16) {
    Fn<float, Half>::run(params, a);
  } else if (x16 && !w16) {
    Fn<Half, float>::run(params, a);
  } else {
    Fn<Half, Half>::run(params, a);
  }
}

}  // namespace

MFT_AOT_EXPORT int MftRmsNormForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                     const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 4) return mft::aot::kBadArgCount;
  RmsNormArgs args;
  if (int st = check_inputs(0, params, ndims, shapes, dtypes, &args); st != mft::aot::kOk) return st;
  if (mft::aot::parse_dtype(dtypes[3]) != args.x_type) return mft::aot::kBadDtype;
  if (!mft::aot::same_shape(ndims[0], shapes[0], ndims[3], shapes[3])) return mft::aot::kBadShape;
  try {
    dispatch<Forward>(params, args);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

MFT_AOT_EXPORT int MftRmsNormBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 6) return mft::aot::kBadArgCount;
  RmsNormArgs args;
  if (int st = check_inputs(1, params, ndims, shapes, dtypes, &args); st != mft::aot::kOk) return st;
  if (mft::aot::parse_dtype(dtypes[0]) != args.x_type || mft::aot::parse_dtype(dtypes[4]) != args.x_type ||
      mft::aot::parse_dtype(dtypes[5]) != args.w_type) {
    return mft::aot::kBadDtype;
  }
  if (!mft::aot::same_shape(ndims[0], shapes[0], ndims[1], shapes[1]) ||
      !mft::aot::same_shape(ndims[1], shapes[1], ndims[4], shapes[4]) ||
      !mft::aot::same_shape(ndims[2], shapes[2], ndims[5], shapes[5])) {
    return mft::aot::kBadShape;
  }
  try {
    dispatch<Backward>(params, args);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
