// The widest vector instruction set the kernels may use on this CPU, decided
// once per process: 2 = AVX-512F (+AVX2, FMA), 1 = AVX2 + FMA, 0 = the
// portable path. MFT_KERNEL_NO_AVX512 / MFT_KERNEL_NO_AVX2 narrow it (tests
// run every path on one machine). Non-x86 builds always get 0.
#pragma once

namespace mft::kernels {

int isa_level();

}  // namespace mft::kernels

// Defines `name##_fn()`: `name` built three times (baseline, AVX2+FMA, AVX-512) and the widest this CPU
// runs. `params` is the parenthesised parameter list and CALL(V) the body's call with the vector type V
// (tile::v4 / v8 / v16 from tile_gemm.h; a body that auto-vectorises may ignore V). For kernels whose
// builds differ only in V; attention and grouped GEMM also vary their register blocking.
#if defined(__x86_64__) && defined(__GNUC__)
#define MFT_ISA_DISPATCH(ret, name, params, CALL)                                                   \
  ret name##_generic params { return CALL(::mft::kernels::tile::v4); }                              \
  __attribute__((target("avx2,fma"))) ret name##_avx2 params { return CALL(::mft::kernels::tile::v8); } \
  __attribute__((target("avx512f,avx2,fma"))) ret name##_avx512 params {                           \
    return CALL(::mft::kernels::tile::v16);                                                         \
  }                                                                                                 \
  using name##_type = ret(*) params;                                                                \
  name##_type name##_fn() {                                                                         \
    const int l = ::mft::kernels::isa_level();                                                      \
    return l == 2 ? name##_avx512 : l == 1 ? name##_avx2 : name##_generic;                          \
  }
#else
#define MFT_ISA_DISPATCH(ret, name, params, CALL)                      \
  ret name##_generic params { return CALL(::mft::kernels::tile::v4); } \
  using name##_type = ret(*) params;                                   \
  name##_type name##_fn() { return name##_generic; }
#endif
