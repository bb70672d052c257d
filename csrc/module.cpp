#include <pybind11/pybind11.h>

#include "bindings/bindings.h"

// Exported aot symbols, listed so Python can check the library it loads is
// the one it expects (mft.ops.registry verifies each symbol with ctypes too).
static const char *const kAotSymbols[] = {"MftRmsNormForward", "MftRmsNormBackward",
                                           "MftAttentionForward", "MftAttentionBackward",
                                           "MftMoeGatingForward", "MftMoeGatingBackward",
                                           "MftMoePermute", "MftMoeUnpermute", "MftGroupedMatmul", "MftGroupedMatmulBackward",
                                           "MftMoeUnpermuteBackward", "MftRopeForward",
                                           "MftRopeBackward", "MftQuantMatmulInt8",
                                           "MftQuantMatmulInt4", "MftQuantMatmulW8A8", "MftPagedAttention", "MftPagedAttentionInt8", "MftPagedMla",
                                           "MftClipAdamW", "MftGlobalNorm", "MftCrossEntropyForward", "MftCrossEntropyBackward",
                                           "MftSwigluForward", "MftSwigluBackward"};

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "mft C++ kernels (pybind11 bindings for tests; aot entry points for MindSpore)";
  mft_bind_rms_norm(m);
  mft_bind_attention(m);
  mft_bind_quant_matmul(m);
  pybind11::list symbols;
  for (const char *s : kAotSymbols) symbols.append(s);
  m.attr("AOT_SYMBOLS") = symbols;
}
