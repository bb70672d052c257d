#include "kernels/isa.h"

#include <cstdlib>

namespace mft::kernels {

int isa_level() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const int level = [] {
    if (std::getenv("MFT_KERNEL_NO_AVX2") != nullptr) return 0;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    if (std::getenv("MFT_KERNEL_NO_AVX512") != nullptr || !__builtin_cpu_supports("avx512f")) return 1;
    return 2;
  }();
  return level;
#else
  return 0;
#endif
}

}  // namespace mft::kernels
