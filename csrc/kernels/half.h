// IEEE 754 binary16 <-> binary32 conversion in portable C++.
// Kernels accumulate in fp32; fp16 only appears at load/store. The scalar
// versions are portable C++ (no _Float16), so the wheel runs on any CPU.
#pragma once

#include <cstdint>
#include <cstring>

namespace mft::kernels {

// Raw fp16 bits; a distinct type so templates can tell it from uint16_t data.
struct Half {
  uint16_t bits;
};
static_assert(sizeof(Half) == 2, "Half must be exactly 16 bits (used over numpy/MindSpore buffers)");

inline float half_to_float(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  uint32_t out;
  if (exp == 0x1f) {  // inf / nan
    out = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {  // normal
    out = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    out = sign;
  } else {  // subnormal: renormalise
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    out = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &out, sizeof f);
  return f;
}

// Round to nearest, ties to even (what numpy's astype(float16) does).
inline Half float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf / nan (keep nan quiet)
    return Half{static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u))};
  }
  if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    return Half{static_cast<uint16_t>(sign | 0x7c00u)};
  }
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) {  // below half of the smallest subnormal
      return Half{sign};
    }
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return Half{static_cast<uint16_t>(sign | q)};
  }
  // normal: rebias exponent, round mantissa from 23 to 10 bits
  uint32_t h = ((abs >> 23) - 112u) << 10 | ((abs >> 13) & 0x3ffu);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into exponent: still correct
  return Half{static_cast<uint16_t>(sign | h)};
}

// Bulk conversions (F16C when the CPU has it, the functions above otherwise;
// both round to nearest even, so results do not depend on the path).
void half_to_float_n(const Half *src, float *dst, int64_t n);
void float_to_half_n(const float *src, Half *dst, int64_t n);

inline float to_float(float v) { return v; }
inline float to_float(Half v) { return half_to_float(v); }

template <typename T>
inline T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline Half from_float<Half>(float v) { return float_to_half(v); }

}  // namespace mft::kernels
