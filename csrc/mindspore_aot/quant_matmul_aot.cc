// MindSpore aot entry points for weight-only quantized matmul
// (python/mft/ops/quant_matmul.py; kernels/quant_matmul.h for the layouts).
//   MftQuantMatmulInt8(x f32 (.., K), w int8 (N, K), scale f32 (N)) -> y f32 (.., N)
//   MftQuantMatmulInt4(x f32 (.., K), w uint8 (N, K/2), scales f32 (N, G), zeros f32 (N, G)) -> y f32 (.., N)
//   MftQuantMatmulW8A8(x f32 (.., K), w int8 (N, K), scale f32 (N)) -> y f32 (.., N)  (x int8 per token inside)
// All three check their arguments through one helper, parse_args.
#include <cstring>
#include <exception>

#include "kernels/quant_matmul.h"
#include "kernels/quant_matmul_w8a8.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is(const char *dtype, const char *want) { return dtype != nullptr && std::strcmp(dtype, want) == 0; }
bool is_f32(const char *dtype) { return mft::aot::parse_dtype(dtype) == mft::aot::DType::kF32; }

enum class Kind { kInt8, kInt4 };  // int8 (N, K) weights with a (N) scale; int4 runs (N, K/2) with (N, G) scales + zeros

// The arguments of one call, checked: x (.., K) and y (.., N) float32 with equal leading dims.
struct Args {
  const float *x = nullptr;
  const void *w = nullptr;
  const float *scale = nullptr;
  const float *zero = nullptr;  // int4 only
  float *y = nullptr;
  int64_t m = 0, n = 0, k = 0, group = 0;  // group: int4 columns per scale
};

int parse_args(Kind kind, int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Args *a) {
  const int iy = kind == Kind::kInt8 ? 3 : 4;  // the output follows the inputs
  if (nparam != iy + 1) return mft::aot::kBadArgCount;
  if (!is(dtypes[1], kind == Kind::kInt8 ? "int8" : "uint8") || !is_f32(dtypes[0]) || !is_f32(dtypes[2]) ||
      !is_f32(dtypes[iy]) || (kind == Kind::kInt4 && !is_f32(dtypes[3]))) {
    return mft::aot::kBadDtype;
  }
  if (ndims[1] != 2) return mft::aot::kBadShape;
  a->n = shapes[1][0];
  if (kind == Kind::kInt8) {
    if (ndims[2] != 1 || shapes[2][0] != a->n) return mft::aot::kBadShape;
    a->k = shapes[1][1];
  } else {
    if (ndims[2] != 2 || !mft::aot::same_shape(2, shapes[2], ndims[3], shapes[3]) || shapes[2][0] != a->n ||
        shapes[2][1] < 1) {
      return mft::aot::kBadShape;
    }
    a->k = shapes[1][1] * 2;
    const int64_t groups = shapes[2][1];
    if (a->k % groups != 0 || (a->k / groups) % 16 != 0) return mft::aot::kBadShape;
    a->group = a->k / groups;
  }
  if (ndims[0] < 1 || ndims[iy] != ndims[0] || shapes[0][ndims[0] - 1] != a->k || shapes[iy][ndims[iy] - 1] != a->n) {
    return mft::aot::kBadShape;
  }
  for (int i = 0; i + 1 < ndims[0]; ++i) {
    if (shapes[0][i] != shapes[iy][i]) return mft::aot::kBadShape;
  }
  a->m = a->k > 0 ? mft::aot::numel(ndims[0], shapes[0]) / a->k : mft::aot::numel(ndims[0] - 1, shapes[0]);
  a->x = static_cast<const float *>(params[0]);
  a->w = params[1];
  a->scale = static_cast<const float *>(params[2]);
  a->zero = kind == Kind::kInt4 ? static_cast<const float *>(params[3]) : nullptr;
  a->y = static_cast<float *>(params[iy]);
  return mft::aot::kOk;
}

// Parses, then runs `body(args)`; C++ exceptions become kInternal.
template <class F>
int run(Kind kind, int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, F body) {
  Args a;
  if (int st = parse_args(kind, nparam, params, ndims, shapes, dtypes, &a); st != mft::aot::kOk) return st;
  try {
    body(a);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftQuantMatmulInt8(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  return run(Kind::kInt8, nparam, params, ndims, shapes, dtypes, [](const Args &a) {
    mft::kernels::quant_matmul_int8(a.x, static_cast<const int8_t *>(a.w), a.scale, a.y, a.m, a.n, a.k);
  });
}

MFT_AOT_EXPORT int MftQuantMatmulInt4(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  return run(Kind::kInt4, nparam, params, ndims, shapes, dtypes, [](const Args &a) {
    mft::kernels::quant_matmul_int4(a.x, static_cast<const uint8_t *>(a.w), a.scale, a.zero, a.y, a.m, a.n, a.k,
                                    a.group);
  });
}

MFT_AOT_EXPORT int MftQuantMatmulW8A8(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void * /*stream*/, void * /*extra*/) {
  return run(Kind::kInt8, nparam, params, ndims, shapes, dtypes, [](const Args &a) {
    mft::kernels::w8a8_matmul(a.x, static_cast<const int8_t *>(a.w), a.scale, a.y, a.m, a.n, a.k);
  });
}
