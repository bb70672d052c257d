// MindSpore aot entry points for MoE routing (see python/mft/ops/moe_routing.py).
//   MftMoeGatingForward(logits (T,E) f32, bias (E,) f32, cfg (k,5) f32) -> (weights (T,k) f32, ids (T,k) i32)
//   MftMoeGatingBackward(dweights, logits, bias, cfg, ids) -> dlogits (T,E)
//   MftMoePermute(x (T,H) f32, ids (T,k) i32, experts (E,) i32) -> (x_sorted (T*k,H), row_map (T*k,) i32, counts (E,) i32)
//   MftMoeUnpermute(y_sorted (T*k,H), row_map (T*k,) i32, weights (T,k) f32) -> out (T,H)
//   MftMoeUnpermuteBackward(dout (T,H), y_sorted, row_map, weights) -> (dy_sorted, dweights)
// cfg row = [sigmoid, n_group, topk_group, norm_topk_prob, routed_scaling_factor];
// its first dimension carries k (and `experts`' length carries E) because
// MindSpore's shape inference only sees input shapes.
#include <cstring>
#include <exception>
#include <vector>

#include "kernels/moe_routing.h"
#include "mindspore_aot/aot_abi.h"

namespace {

namespace aot = mft::aot;
namespace k = mft::kernels;

bool is_f32(const char *dt) { return aot::parse_dtype(dt) == aot::DType::kF32; }
bool is_i32(const char *dt) { return dt != nullptr && std::strcmp(dt, "int32") == 0; }

bool dims_are(int nd, const int64_t *sh, std::initializer_list<int64_t> want) {
  if (nd != static_cast<int>(want.size())) return false;
  int i = 0;
  for (int64_t w : want) {
    if (sh[i++] != w) return false;
  }
  return true;
}

struct Gating {
  int64_t tokens = 0, experts = 0, topk = 0;
  k::GatingConfig cfg;
};

// logits at index 0 + off, bias at 1 + off, cfg at 2 + off.
int parse_gating(int off, void **params, int *ndims, int64_t **shapes, const char **dtypes, Gating *g) {
  const int il = off, ib = off + 1, ic = off + 2;
  if (!is_f32(dtypes[il]) || !is_f32(dtypes[ib]) || !is_f32(dtypes[ic])) return aot::kBadDtype;
  if (ndims[il] != 2 || ndims[ic] != 2 || shapes[ic][1] != 5) return aot::kBadShape;
  g->tokens = shapes[il][0];
  g->experts = shapes[il][1];
  g->topk = shapes[ic][0];
  if (!dims_are(ndims[ib], shapes[ib], {g->experts})) return aot::kBadShape;
  const float *c = static_cast<const float *>(params[ic]);
  g->cfg.sigmoid = c[0] != 0.f;
  g->cfg.n_group = static_cast<int64_t>(c[1]);
  g->cfg.topk_group = static_cast<int64_t>(c[2]);
  g->cfg.norm_topk_prob = c[3] != 0.f;
  g->cfg.routed_scaling_factor = c[4];
  if (!k::check_gating_args(g->tokens, g->experts, g->topk, g->cfg).empty()) return aot::kBadShape;
  return aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftMoeGatingForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                       const char **dtypes, void *, void *) {
  if (nparam != 5) return aot::kBadArgCount;
  Gating g;
  if (int st = parse_gating(0, params, ndims, shapes, dtypes, &g); st != aot::kOk) return st;
  if (!is_f32(dtypes[3]) || !is_i32(dtypes[4])) return aot::kBadDtype;
  if (!dims_are(ndims[3], shapes[3], {g.tokens, g.topk}) || !dims_are(ndims[4], shapes[4], {g.tokens, g.topk}))
    return aot::kBadShape;
  try {
    k::moe_gating_forward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                          static_cast<float *>(params[3]), static_cast<int32_t *>(params[4]), g.tokens,
                          g.experts, g.topk, g.cfg);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

MFT_AOT_EXPORT int MftMoeGatingBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                        const char **dtypes, void *, void *) {
  if (nparam != 6) return aot::kBadArgCount;
  Gating g;
  if (int st = parse_gating(1, params, ndims, shapes, dtypes, &g); st != aot::kOk) return st;
  if (!is_f32(dtypes[0]) || !is_i32(dtypes[4]) || !is_f32(dtypes[5])) return aot::kBadDtype;
  if (!dims_are(ndims[0], shapes[0], {g.tokens, g.topk}) || !dims_are(ndims[4], shapes[4], {g.tokens, g.topk}) ||
      !dims_are(ndims[5], shapes[5], {g.tokens, g.experts}))
    return aot::kBadShape;
  const int32_t *ids = static_cast<const int32_t *>(params[4]);
  if (!k::ids_in_range(ids, g.tokens * g.topk, g.experts)) return aot::kBadValue;
  try {
    k::moe_gating_backward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), ids,
                           static_cast<float *>(params[5]), g.tokens, g.experts, g.topk, g.cfg);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

MFT_AOT_EXPORT int MftMoePermute(int nparam, void **params, int *ndims, int64_t **shapes,
                                 const char **dtypes, void *, void *) {
  if (nparam != 6) return aot::kBadArgCount;
  if (!is_f32(dtypes[0]) || !is_i32(dtypes[1]) || !is_i32(dtypes[2]) || !is_f32(dtypes[3]) ||
      !is_i32(dtypes[4]) || !is_i32(dtypes[5]))
    return aot::kBadDtype;
  if (ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 1) return aot::kBadShape;
  const int64_t t = shapes[0][0], h = shapes[0][1], topk = shapes[1][1], e = shapes[2][0];
  if (shapes[1][0] != t || e <= 0 || !dims_are(ndims[3], shapes[3], {t * topk, h}) ||
      !dims_are(ndims[4], shapes[4], {t * topk}) || !dims_are(ndims[5], shapes[5], {e}))
    return aot::kBadShape;
  const int32_t *ids = static_cast<const int32_t *>(params[1]);
  if (!k::ids_in_range(ids, t * topk, e)) return aot::kBadValue;
  try {
    k::moe_permute(static_cast<const float *>(params[0]), ids, static_cast<float *>(params[3]),
                   static_cast<int32_t *>(params[4]), static_cast<int32_t *>(params[5]), t, h, topk, e);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

MFT_AOT_EXPORT int MftMoeUnpermute(int nparam, void **params, int *ndims, int64_t **shapes,
                                   const char **dtypes, void *, void *) {
  if (nparam != 4) return aot::kBadArgCount;
  if (!is_f32(dtypes[0]) || !is_i32(dtypes[1]) || !is_f32(dtypes[2]) || !is_f32(dtypes[3])) return aot::kBadDtype;
  if (ndims[0] != 2 || ndims[2] != 2) return aot::kBadShape;
  const int64_t t = shapes[2][0], topk = shapes[2][1], h = shapes[0][1];
  if (shapes[0][0] != t * topk || !dims_are(ndims[1], shapes[1], {t * topk}) ||
      !dims_are(ndims[3], shapes[3], {t, h}))
    return aot::kBadShape;
  try {
    std::vector<int32_t> inv(static_cast<size_t>(t * topk));
    if (!k::invert_row_map(static_cast<const int32_t *>(params[1]), t * topk, inv.data())) return aot::kBadValue;
    k::moe_unpermute(static_cast<const float *>(params[0]), inv.data(), static_cast<const float *>(params[2]),
                     static_cast<float *>(params[3]), t, h, topk);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}

MFT_AOT_EXPORT int MftMoeUnpermuteBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                           const char **dtypes, void *, void *) {
  if (nparam != 6) return aot::kBadArgCount;
  for (int i : {0, 1, 3, 4, 5}) {
    if (!is_f32(dtypes[i])) return aot::kBadDtype;
  }
  if (!is_i32(dtypes[2])) return aot::kBadDtype;
  if (ndims[0] != 2 || ndims[3] != 2) return aot::kBadShape;
  const int64_t t = shapes[0][0], h = shapes[0][1], topk = shapes[3][1];
  if (shapes[3][0] != t || !dims_are(ndims[1], shapes[1], {t * topk, h}) ||
      !dims_are(ndims[2], shapes[2], {t * topk}) || !dims_are(ndims[4], shapes[4], {t * topk, h}) ||
      !dims_are(ndims[5], shapes[5], {t, topk}))
    return aot::kBadShape;
  const int32_t *row_map = static_cast<const int32_t *>(params[2]);
  try {
    std::vector<int32_t> inv(static_cast<size_t>(t * topk));
    if (!k::invert_row_map(row_map, t * topk, inv.data())) return aot::kBadValue;
    k::moe_unpermute_backward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                              row_map, static_cast<const float *>(params[3]), static_cast<float *>(params[4]),
                              static_cast<float *>(params[5]), t, h, topk);
  } catch (const std::exception &) {
    return aot::kInternal;
  }
  return aot::kOk;
}
