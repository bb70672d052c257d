// MindSpore aot entry points for weight-only quantized matmul
// (python/mft/ops/quant_matmul.py; kernels/quant_matmul.h for the layouts).
//   MftQuantMatmulInt8(x f32 (.., K), w int8 (N, K), scale f32 (N)) -> y f32 (.., N)
//   MftQuantMatmulInt4(x f32 (.., K), w uint8 (N, K/2), scales f32 (N, G), zeros f32 (N, G)) -> y f32 (.., N)
//   MftQuantMatmulW8A8(x f32 (.., K), w int8 (N, K), scale f32 (N)) -> y f32 (.., N)  (x int8 per token inside)
#include <cstring>
#include <exception>

#include "kernels/quant_matmul.h"
#include "kernels/quant_matmul_w8a8.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is(const char *dtype, const char *want) { return dtype != nullptr && std::strcmp(dtype, want) == 0; }

// x (index 0) and y (index iy): float32, same leading dims, K and N as given.
int check_xy(int *ndims, int64_t **shapes, const char **dtypes, int iy, int64_t k, int64_t n, int64_t *m) {
  if (mft::aot::parse_dtype(dtypes[0]) != mft::aot::DType::kF32 ||
      mft::aot::parse_dtype(dtypes[iy]) != mft::aot::DType::kF32) {
    return mft::aot::kBadDtype;
  }
  if (ndims[0] < 1 || ndims[iy] != ndims[0] || shapes[0][ndims[0] - 1] != k || shapes[iy][ndims[iy] - 1] != n) {
    return mft::aot::kBadShape;
  }
  for (int i = 0; i + 1 < ndims[0]; ++i) {
    if (shapes[0][i] != shapes[iy][i]) return mft::aot::kBadShape;
  }
  *m = k > 0 ? mft::aot::numel(ndims[0], shapes[0]) / k : mft::aot::numel(ndims[0] - 1, shapes[0]);
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftQuantMatmulInt8(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 4) return mft::aot::kBadArgCount;
  if (!is(dtypes[1], "int8") || mft::aot::parse_dtype(dtypes[2]) != mft::aot::DType::kF32) {
    return mft::aot::kBadDtype;
  }
  if (ndims[1] != 2 || ndims[2] != 1 || shapes[2][0] != shapes[1][0]) return mft::aot::kBadShape;
  const int64_t n = shapes[1][0], k = shapes[1][1];
  int64_t m = 0;
  if (int st = check_xy(ndims, shapes, dtypes, 3, k, n, &m); st != mft::aot::kOk) return st;
  try {
    mft::kernels::quant_matmul_int8(static_cast<const float *>(params[0]), static_cast<const int8_t *>(params[1]),
                                    static_cast<const float *>(params[2]), static_cast<float *>(params[3]), m, n, k);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

MFT_AOT_EXPORT int MftQuantMatmulInt4(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 5) return mft::aot::kBadArgCount;
  if (!is(dtypes[1], "uint8") || mft::aot::parse_dtype(dtypes[2]) != mft::aot::DType::kF32 ||
      mft::aot::parse_dtype(dtypes[3]) != mft::aot::DType::kF32) {
    return mft::aot::kBadDtype;
  }
  if (ndims[1] != 2 || ndims[2] != 2 || !mft::aot::same_shape(2, shapes[2], ndims[3], shapes[3]) ||
      shapes[2][0] != shapes[1][0] || shapes[2][1] < 1) {
    return mft::aot::kBadShape;
  }
  const int64_t n = shapes[1][0], k = shapes[1][1] * 2, groups = shapes[2][1];
  if (k % groups != 0 || (k / groups) % 16 != 0) return mft::aot::kBadShape;
  int64_t m = 0;
  if (int st = check_xy(ndims, shapes, dtypes, 4, k, n, &m); st != mft::aot::kOk) return st;
  try {
    mft::kernels::quant_matmul_int4(static_cast<const float *>(params[0]), static_cast<const uint8_t *>(params[1]),
                                    static_cast<const float *>(params[2]), static_cast<const float *>(params[3]),
                                    static_cast<float *>(params[4]), m, n, k, k / groups);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

MFT_AOT_EXPORT int MftQuantMatmulW8A8(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 4) return mft::aot::kBadArgCount;
  if (!is(dtypes[1], "int8") || mft::aot::parse_dtype(dtypes[2]) != mft::aot::DType::kF32) {
    return mft::aot::kBadDtype;
  }
  if (ndims[1] != 2 || ndims[2] != 1 || shapes[2][0] != shapes[1][0]) return mft::aot::kBadShape;
  const int64_t n = shapes[1][0], k = shapes[1][1];
  int64_t m = 0;
  if (int st = check_xy(ndims, shapes, dtypes, 3, k, n, &m); st != mft::aot::kOk) return st;
  try {
    mft::kernels::w8a8_matmul(static_cast<const float *>(params[0]), static_cast<const int8_t *>(params[1]),
                              static_cast<const float *>(params[2]), static_cast<float *>(params[3]), m, n, k);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
