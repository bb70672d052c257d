// The widest vector instruction set the kernels may use on this CPU, decided
// once per process: 2 = AVX-512F (+AVX2, FMA), 1 = AVX2 + FMA, 0 = the
// portable path. MFT_KERNEL_NO_AVX512 / MFT_KERNEL_NO_AVX2 narrow it (tests
// run every path on one machine). Non-x86 builds always get 0.
#pragma once

namespace mft::kernels {

int isa_level();

}  // namespace mft::kernels
