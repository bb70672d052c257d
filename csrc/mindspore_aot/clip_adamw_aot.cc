// MindSpore aot entry point for clip + AdamW over all tensors (see python/mft/ops/clip_adamw.py).
//   MftClipAdamW(lr[1], hyper[4] = (beta1, beta2, eps, max_norm), step[1] int32,
//                settings[2N] = (lr_scale, weight_decay) per tensor,
//                params x N, exp_avg x N, exp_avg_sq x N, grads x N) -> norm[1] fp32
// Updates params, exp_avg, exp_avg_sq and step in place (the op carries
// MindSpore's side_effect_mem attribute, so the graph orders it like Assign),
// and only when the gradient norm is finite.
#include <cmath>
#include <exception>
#include <string_view>
#include <vector>

#include "kernels/clip_adamw.h"
#include "mindspore_aot/aot_abi.h"

namespace {

constexpr int kFixedInputs = 4;

bool is_f32(const char *dtype) { return mft::aot::parse_dtype(dtype) == mft::aot::DType::kF32; }

// Checks the inputs and fills one AdamWTensor per parameter.
int collect(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
            std::vector<mft::kernels::AdamWTensor> *tensors) {
  const int n_inputs = nparam - 1;
  if (n_inputs < kFixedInputs + 4 || (n_inputs - kFixedInputs) % 4 != 0) return mft::aot::kBadArgCount;
  const int n = (n_inputs - kFixedInputs) / 4;
  if (!is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[3]) || !is_f32(dtypes[nparam - 1])) {
    return mft::aot::kBadDtype;
  }
  if (std::string_view(dtypes[2] ? dtypes[2] : "") != "int32") return mft::aot::kBadDtype;
  if (mft::aot::numel(ndims[0], shapes[0]) != 1 || mft::aot::numel(ndims[1], shapes[1]) != 4 ||
      mft::aot::numel(ndims[2], shapes[2]) != 1 || mft::aot::numel(ndims[3], shapes[3]) != 2 * n) {
    return mft::aot::kBadShape;
  }
  const float *settings = static_cast<const float *>(params[3]);
  tensors->resize(n);
  for (int i = 0; i < n; ++i) {
    const int ip = kFixedInputs + i, im = ip + n, iv = ip + 2 * n, ig = ip + 3 * n;
    for (int k : {ip, im, iv, ig}) {
      if (!is_f32(dtypes[k])) return mft::aot::kBadDtype;
      if (!mft::aot::same_shape(ndims[k], shapes[k], ndims[ip], shapes[ip])) return mft::aot::kBadShape;
    }
    (*tensors)[i] = {static_cast<float *>(params[ip]), static_cast<float *>(params[im]),
                     static_cast<float *>(params[iv]), static_cast<const float *>(params[ig]),
                     mft::aot::numel(ndims[ip], shapes[ip]), settings[2 * i], settings[2 * i + 1]};
  }
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftClipAdamW(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void * /*stream*/, void * /*extra*/) {
  try {
    std::vector<mft::kernels::AdamWTensor> tensors;
    const int status = collect(nparam, params, ndims, shapes, dtypes, &tensors);
    if (status != mft::aot::kOk) return status;
    const float *hyper = static_cast<const float *>(params[1]);
    int32_t *step = static_cast<int32_t *>(params[2]);
    const mft::kernels::AdamWHyper h{*static_cast<const float *>(params[0]), hyper[0], hyper[1], hyper[2], hyper[3],
                                     static_cast<int64_t>(*step) + 1};
    const float norm = mft::kernels::clip_adamw_step(tensors.data(), static_cast<int>(tensors.size()), h);
    if (std::isfinite(norm)) *step += 1;
    *static_cast<float *>(params[nparam - 1]) = norm;
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}

// MftGlobalNorm(grads x N) -> norm[1] fp32: sqrt of the fixed-order sum of squares (the same bits on every
// ISA path and machine load), for the train steps that clip without the fused update (Muon, Adafactor,
// train.optimizer.fused=false, the gated step).
MFT_AOT_EXPORT int MftGlobalNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void * /*stream*/, void * /*extra*/) {
  if (nparam < 2) return mft::aot::kBadArgCount;
  const int n = nparam - 1;
  for (int i = 0; i <= n; ++i) {
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  }
  if (mft::aot::numel(ndims[n], shapes[n]) != 1) return mft::aot::kBadShape;
  try {
    std::vector<mft::kernels::AdamWTensor> tensors(n);
    for (int i = 0; i < n; ++i) {
      tensors[i].grad = static_cast<const float *>(params[i]);
      tensors[i].size = mft::aot::numel(ndims[i], shapes[i]);
    }
    const double ss = mft::kernels::gradient_sum_squares(tensors.data(), n);
    *static_cast<float *>(params[n]) = static_cast<float>(std::sqrt(ss));
    return mft::aot::kOk;
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
}
