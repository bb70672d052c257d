#include "kernels/half.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MFT_HAVE_X86 1
#endif

namespace mft::kernels {
namespace {

void half_to_float_scalar(const Half *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

void float_to_half_scalar(const float *src, Half *dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

#ifdef MFT_HAVE_X86
// F16C converts 8 values per instruction; compiled for F16C only here and
// chosen at run time, so the library still loads on CPUs without it.
__attribute__((target("avx,f16c"))) void half_to_float_f16c(const Half *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  half_to_float_scalar(src + i, dst + i, n - i);
}

__attribute__((target("avx,f16c"))) void float_to_half_f16c(const float *src, Half *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + i), h);
  }
  float_to_half_scalar(src + i, dst + i, n - i);
}

bool cpu_has_f16c() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
#endif

}  // namespace

void half_to_float_n(const Half *src, float *dst, int64_t n) {
#ifdef MFT_HAVE_X86
  if (cpu_has_f16c()) return half_to_float_f16c(src, dst, n);
#endif
  half_to_float_scalar(src, dst, n);
}

void float_to_half_n(const float *src, Half *dst, int64_t n) {
#ifdef MFT_HAVE_X86
  if (cpu_has_f16c()) return float_to_half_f16c(src, dst, n);
#endif
  float_to_half_scalar(src, dst, n);
}

}  // namespace mft::kernels
