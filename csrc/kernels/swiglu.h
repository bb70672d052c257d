// SwiGLU activation of a feed-forward layer, forward and backward:
// out = silu(gate) * up with silu(g) = g * sigmoid(g). One kernel each way
// instead of the composed sigmoid / multiplies (and their gradients).
#pragma once

#include <cstdint>

namespace mft::kernels {

void swiglu_forward(const float *gate, const float *up, int64_t n, float *out);

// dgate = dout * up * s * (1 + g * (1 - s)), dup = dout * g * s, with s = sigmoid(g).
void swiglu_backward(const float *dout, const float *gate, const float *up, int64_t n, float *dgate, float *dup);

}  // namespace mft::kernels
