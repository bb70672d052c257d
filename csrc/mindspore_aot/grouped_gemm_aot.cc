// MindSpore aot entry points for the MoE grouped GEMM (see python/mft/ops/grouped_matmul.py).
//   MftGroupedMatmul(x (N,K) f32, w (E,O,K) f32, counts (E,) i32) -> y (N,O)
//   MftGroupedMatmulBackward(dy (N,O), x, w, counts) -> (dx (N,K), dw (E,O,K))
#include <cstring>
#include <exception>

#include "kernels/grouped_gemm.h"
#include "mindspore_aot/aot_abi.h"

namespace {

namespace aot = mft::aot;
namespace k = mft::kernels;

struct Dims {
  int64_t rows = 0, in = 0, out = 0, experts = 0;
};

// x at index ix, w at ix + 1, counts at ix + 2.
int parse(int ix, int *ndims, int64_t **shapes, const char **dtypes, void **params, Dims *d) {
  const int iw = ix + 1, ic = ix + 2;
  if (aot::parse_dtype(dtypes[ix]) != aot::DType::kF32 || aot::parse_dtype(dtypes[iw]) != aot::DType::kF32 ||
      dtypes[ic] == nullptr || std::strcmp(dtypes[ic], "int32") != 0)
    return aot::kBadDtype;
  if (ndims[ix] != 2 || ndims[iw] != 3 || ndims[ic] != 1) return aot::kBadShape;
  d->rows = shapes[ix][0];
  d->in = shapes[ix][1];
  d->experts = shapes[iw][0];
  d->out = shapes[iw][1];
  if (shapes[iw][2] != d->in || shapes[ic][0] != d->experts) return aot::kBadShape;
  if (!k::check_grouped_gemm_args(static_cast<const int32_t *>(params[ic]), d->experts, d->rows).empty())
    return aot::kBadValue;
  return aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftGroupedMatmul(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                    void *, void *) {
  if (nparam != 4) return aot::kBadArgCount;
  Dims d;
  if (int s = parse(0, ndims, shapes, dtypes, params, &d)) return s;
  if (ndims[3] != 2 || shapes[3][0] != d.rows || shapes[3][1] != d.out) return aot::kBadShape;
  try {
    k::grouped_gemm_forward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                            static_cast<const int32_t *>(params[2]), static_cast<float *>(params[3]), d.experts,
                            d.rows, d.in, d.out);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

MFT_AOT_EXPORT int MftGroupedMatmulBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                            const char **dtypes, void *, void *) {
  if (nparam != 6) return aot::kBadArgCount;
  Dims d;
  if (int s = parse(1, ndims, shapes, dtypes, params, &d)) return s;
  if (ndims[0] != 2 || shapes[0][0] != d.rows || shapes[0][1] != d.out) return aot::kBadShape;
  try {
    k::grouped_gemm_backward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                             static_cast<const float *>(params[2]), static_cast<const int32_t *>(params[3]),
                             static_cast<float *>(params[4]), static_cast<float *>(params[5]), d.experts, d.rows,
                             d.in, d.out);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}
