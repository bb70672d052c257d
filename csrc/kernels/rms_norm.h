// Fused RMSNorm over the last axis:  y = x * rsqrt(mean(x^2) + eps) * w.
// Inputs are viewed as `rows` x `hidden`, row-major and contiguous. All sums
// are fp32 whatever the I/O type, matching the fp32 MindSpore reference.
#pragma once

#include <cstdint>

#include "kernels/half.h"

namespace mft::kernels {

// X: activation type (float or Half); W: weight type (float or Half).
// y has the type of x.
template <typename X, typename W>
void rms_norm_forward(const X *x, const W *w, X *y, int64_t rows, int64_t hidden, float eps);

// Given dy = dL/dy, writes dx = dL/dx (type of x) and dw = dL/dw summed over
// all rows (type of w). Recomputes the row rstd rather than storing it: the
// backward has to read x anyway, so this costs one extra multiply-add per element.
template <typename X, typename W>
void rms_norm_backward(const X *dy, const X *x, const W *w, X *dx, W *dw, int64_t rows,
                       int64_t hidden, float eps);

}  // namespace mft::kernels
