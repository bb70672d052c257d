// Grouped GEMM for sparse MoE experts, fp32 on the host.
//
// The rows of x (N, K) come grouped by expert, as moe_permute leaves them:
// expert e owns the counts[e] rows that start where expert e-1's end. Each
// group is multiplied by its own expert weight, stored like nn.Linear's
// (out, in) and stacked: w (E, O, K). So the work is proportional to the
// routed rows (N = tokens * top_k), not to tokens * experts.
//
//   forward   y_e  = x_e W_e^T            y (N, O)
//   backward  dx_e = dy_e W_e             dx (N, K)
//             dW_e = dy_e^T x_e           dw (E, O, K), zero for empty experts
//
// Every output element is summed over its reduction axis in increasing order
// by one thread, so results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

// Empty if counts (E,) are non-negative and sum to rows, else what is wrong.
std::string check_grouped_gemm_args(const int32_t *counts, int64_t experts, int64_t rows);

void grouped_gemm_forward(const float *x, const float *w, const int32_t *counts, float *y, int64_t experts,
                          int64_t rows, int64_t in_features, int64_t out_features);

void grouped_gemm_backward(const float *dy, const float *x, const float *w, const int32_t *counts, float *dx,
                           float *dw, int64_t experts, int64_t rows, int64_t in_features, int64_t out_features);

}  // namespace mft::kernels
