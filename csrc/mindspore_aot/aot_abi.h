// Helpers shared by the extern "C" entry points MindSpore's Custom(func_type="aot")
// op calls through dlsym. The calling convention (MindSpore 2.10, CPU):
//   int Func(int nparam, void **params, int *ndims, int64_t **shapes,
//            const char **dtypes, void *stream, void *extra)
// params holds the inputs, then the outputs (already allocated by MindSpore);
// dtypes are strings such as "float32" / "float16"; `stream` is unused on CPU.
// A non-zero return makes MindSpore raise RuntimeError naming the function and
// the code, so entry points validate everything and never throw or abort.
#pragma once

#include <cstdint>
#include <cstring>

#define MFT_AOT_EXPORT extern "C" __attribute__((visibility("default")))

namespace mft::aot {

// Return codes, documented in docs/feature/custom_ops.md.
enum Status : int {
  kOk = 0,
  kBadArgCount = 1,   // nparam is not inputs + outputs of this op
  kBadDtype = 2,      // a dtype the kernel has no instantiation for
  kBadShape = 3,      // shapes do not agree (e.g. weight length != hidden)
  kInternal = 4,      // a C++ exception was caught (e.g. out of memory)
  kBadValue = 5,      // an index input is out of range (e.g. an expert id >= experts)
};

enum class DType { kF32, kF16, kOther };

inline DType parse_dtype(const char *s) {
  if (s == nullptr) return DType::kOther;
  if (std::strcmp(s, "float32") == 0 || std::strcmp(s, "float") == 0) return DType::kF32;
  if (std::strcmp(s, "float16") == 0) return DType::kF16;
  return DType::kOther;
}

inline int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

inline bool same_shape(int nd_a, const int64_t *a, int nd_b, const int64_t *b) {
  if (nd_a != nd_b) return false;
  for (int i = 0; i < nd_a; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace mft::aot
