// MindSpore aot entry points for the fused causal-LM cross-entropy (see python/mft/ops/cross_entropy.py).
//   MftCrossEntropyForward(logits (N, V) fp32, labels (N) int32, ignore_index[1] int32) -> (loss[1], lse (N))
//   MftCrossEntropyBackward(logits, labels, lse (N), dloss[1] fp32, ignore_index[1]) -> dlogits (N, V)
// A label outside [0, V) that is not ignore_index returns kBadValue.
#include <cstring>
#include <exception>

#include "kernels/cross_entropy.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is(const char *dtype, const char *want) { return dtype != nullptr && std::strcmp(dtype, want) == 0; }

// Checks logits (0), labels (1) and returns rows/vocab; ignore_index is at `ii`.
int check(int *ndims, int64_t **shapes, const char **dtypes, int ii, int64_t *rows, int64_t *vocab) {
  if (mft::aot::parse_dtype(dtypes[0]) != mft::aot::DType::kF32 || !is(dtypes[1], "int32") || !is(dtypes[ii], "int32")) {
    return mft::aot::kBadDtype;
  }
  if (ndims[0] != 2 || ndims[1] != 1 || shapes[1][0] != shapes[0][0] || mft::aot::numel(ndims[ii], shapes[ii]) != 1) {
    return mft::aot::kBadShape;
  }
  *rows = shapes[0][0];
  *vocab = shapes[0][1];
  return *vocab > 0 ? mft::aot::kOk : mft::aot::kBadShape;
}

}  // namespace

MFT_AOT_EXPORT int MftCrossEntropyForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                          const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 5) return mft::aot::kBadArgCount;
  try {
    int64_t rows = 0, vocab = 0;
    const int status = check(ndims, shapes, dtypes, 2, &rows, &vocab);
    if (status != mft::aot::kOk) return status;
    const auto *labels = static_cast<const int32_t *>(params[1]);
    const int32_t ignore = *static_cast<const int32_t *>(params[2]);
    if (mft::kernels::cross_entropy_bad_label(labels, rows, vocab, ignore) >= 0) return mft::aot::kBadValue;
    mft::kernels::cross_entropy_forward(static_cast<const float *>(params[0]), labels, rows, vocab, ignore,
                                        static_cast<float *>(params[3]), static_cast<float *>(params[4]));
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}

MFT_AOT_EXPORT int MftCrossEntropyBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                           const char **dtypes, void * /*stream*/, void * /*extra*/) {
  if (nparam != 6) return mft::aot::kBadArgCount;
  try {
    int64_t rows = 0, vocab = 0;
    const int status = check(ndims, shapes, dtypes, 4, &rows, &vocab);
    if (status != mft::aot::kOk) return status;
    if (mft::aot::parse_dtype(dtypes[2]) != mft::aot::DType::kF32 || mft::aot::parse_dtype(dtypes[3]) != mft::aot::DType::kF32) {
      return mft::aot::kBadDtype;
    }
    if (mft::aot::numel(ndims[2], shapes[2]) != rows || mft::aot::numel(ndims[3], shapes[3]) != 1) return mft::aot::kBadShape;
    const auto *labels = static_cast<const int32_t *>(params[1]);
    const int32_t ignore = *static_cast<const int32_t *>(params[4]);
    if (mft::kernels::cross_entropy_bad_label(labels, rows, vocab, ignore) >= 0) return mft::aot::kBadValue;
    mft::kernels::cross_entropy_backward(static_cast<const float *>(params[0]), labels,
                                         static_cast<const float *>(params[2]), *static_cast<const float *>(params[3]),
                                         rows, vocab, ignore, static_cast<float *>(params[5]));
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}
