// MindSpore aot entry point of the shared-memory all-reduce (python/mft/ops/host_all_reduce.py).
//   MftHostAllReduce(x f32 (any shape), meta i32 (6,)) -> sum over the group's ranks, x's shape
// meta = (token_hi, token_lo, rank, size, site, timeout_s): the segment is /mft_ar_<token>_<site>,
// one per call site; every rank of the group passes the same token (drawn by rank 0 and sent to the
// others when the op is built) and site.
#include <cstdio>
#include <exception>
#include <string>

#include "kernels/host_all_reduce.h"
#include "mindspore_aot/aot_abi.h"

MFT_AOT_EXPORT int MftHostAllReduce(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                    void *, void *) {
  if (nparam != 3) return mft::aot::kBadArgCount;
  if (mft::aot::parse_dtype(dtypes[0]) != mft::aot::DType::kF32 || mft::aot::parse_dtype(dtypes[2]) != mft::aot::DType::kF32 ||
      dtypes[1] == nullptr || std::strcmp(dtypes[1], "int32") != 0)
    return mft::aot::kBadDtype;
  const int64_t n = mft::aot::numel(ndims[0], shapes[0]);
  if (mft::aot::numel(ndims[2], shapes[2]) != n || mft::aot::numel(ndims[1], shapes[1]) != 6) return mft::aot::kBadShape;
  const int32_t *meta = static_cast<const int32_t *>(params[1]);
  char name[64];
  std::snprintf(name, sizeof name, "/mft_ar_%08x%08x_%d", static_cast<unsigned>(meta[0]), static_cast<unsigned>(meta[1]),
                meta[4]);
  try {
    const std::string err = mft::kernels::host_all_reduce(name, meta[2], meta[3], static_cast<const float *>(params[0]),
                                                          static_cast<float *>(params[2]), n, meta[5]);
    if (!err.empty()) {
      std::fprintf(stderr, "MftHostAllReduce %s: %s\n", name, err.c_str());
      return err.find("timed out") != std::string::npos ? mft::aot::kInternal : mft::aot::kBadValue;
    }
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
