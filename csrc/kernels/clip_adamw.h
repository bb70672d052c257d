// Global-norm gradient clipping and AdamW over every tensor of a model in one
// call. At small batch a train step is launch-bound: the composed version is
// a concat, a norm, a multiply per tensor and an AdamW kernel per tensor
// (~2 launches per parameter tensor), this is one.
#pragma once

#include <cstdint>

namespace mft::kernels {

// One parameter tensor and its AdamW state, all fp32 and `size` elements.
struct AdamWTensor {
  float *param;
  float *exp_avg;
  float *exp_avg_sq;
  const float *grad;
  int64_t size;
  float lr_scale;      // multiplies the step's learning rate (param groups)
  float weight_decay;  // decoupled: param -= lr * lr_scale * weight_decay * param
};

struct AdamWHyper {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float max_norm;  // <= 0: no clipping (the norm is still returned)
  int64_t step;    // 1-based number of the step being taken (bias correction)
};

// Sum of x^2 over the gradients in a fixed order (16 fp32 lanes per block of
// 4096 elements, blocks summed in double): the same bits on every ISA path
// and thread count.
double gradient_sum_squares(const AdamWTensor *tensors, int n);

// Returns the pre-clip global gradient norm. If it is finite, clips the
// gradients to max_norm (scale min(1, max_norm / (norm + 1e-6))) and applies
// one AdamW step with bias correction to every tensor; if it is not finite
// (NaN/Inf gradients, an fp16 overflow), nothing is written.
float clip_adamw_step(const AdamWTensor *tensors, int n, const AdamWHyper &h);

}  // namespace mft::kernels
