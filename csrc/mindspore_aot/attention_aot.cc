// MindSpore aot entry points for fused attention (python/mft/ops/attention.py).
//   MftAttentionForward(q, k, v, scale[1|2] f32, seq_ends (1|B, N) i32, q_offset[1] i32) -> (out, lse)
//   MftAttentionBackward(dout, q, k, v, out, lse, scale[1|2], seq_ends, q_offset) -> (dq, dk, dv)
// scale = (scale) is causal; (scale, 0) is bidirectional within documents (the
// flag rides in the scale tensor so both directions share one op and its bprop).
// q/out/dout (B, H, S, D), k/v (B, KVH, L, D), lse (B, H, S), all float32:
// the S queries are positions [q_offset, q_offset + S) of the L keys (L = S,
// q_offset = 0 for plain self-attention; context parallelism passes a
// chunk's queries with the keys up to its end). seq_ends with N == 0 columns
// means "no packing" (one document per sample).
#include <exception>

#include "kernels/attention.h"
#include "mindspore_aot/aot_abi.h"

namespace {

using mft::aot::DType;
using mft::kernels::AttentionShape;
using mft::kernels::SeqEnds;

bool is_f32(const char *dt) { return mft::aot::parse_dtype(dt) == DType::kF32; }
bool is_i32(const char *dt) { return dt != nullptr && std::strcmp(dt, "int32") == 0; }

bool shape_is(int nd, const int64_t *sh, std::initializer_list<int64_t> want) {
  if (nd != static_cast<int>(want.size())) return false;
  int i = 0;
  for (int64_t w : want)
    if (sh[i++] != w) return false;
  return true;
}

// Reads q at iq, k at iq+1, v at iq+2, scale at is, seq_ends at ie, q_offset at ie+1.
int parse(int iq, int is, int ie, void **params, int *ndims, int64_t **shapes, const char **dtypes,
          AttentionShape *s, SeqEnds *e, float *scale) {
  const int io = ie + 1;
  for (int i = iq; i < iq + 3; ++i)
    if (!is_f32(dtypes[i]) || ndims[i] != 4) return is_f32(dtypes[i]) ? mft::aot::kBadShape : mft::aot::kBadDtype;
  if (!is_f32(dtypes[is]) || !is_i32(dtypes[ie]) || !is_i32(dtypes[io])) return mft::aot::kBadDtype;
  const int64_t *qs = shapes[iq], *ks = shapes[iq + 1];
  s->batch = qs[0], s->heads = qs[1], s->seq = qs[2], s->dim = qs[3];
  s->kv_heads = ks[1];
  s->kv_seq = ks[2];
  if (!shape_is(4, ks, {s->batch, s->kv_heads, s->kv_seq, s->dim}) ||
      !shape_is(ndims[iq + 2], shapes[iq + 2], {s->batch, s->kv_heads, s->kv_seq, s->dim}) ||
      (mft::aot::numel(ndims[is], shapes[is]) != 1 && mft::aot::numel(ndims[is], shapes[is]) != 2) || ndims[ie] != 2 ||
      mft::aot::numel(ndims[io], shapes[io]) != 1) {
    return mft::aot::kBadShape;
  }
  s->q_offset = *static_cast<const int32_t *>(params[io]);
  e->rows = shapes[ie][0];
  e->count = shapes[ie][1];
  e->ends = e->count > 0 ? static_cast<const int32_t *>(params[ie]) : nullptr;
  const float *scale_in = static_cast<const float *>(params[is]);
  *scale = scale_in[0];
  s->causal = mft::aot::numel(ndims[is], shapes[is]) == 1 || scale_in[1] != 0.f;
  if (!mft::kernels::check_attention_args(*s, *e).empty()) return mft::aot::kBadShape;
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftAttentionForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                       const char **dtypes, void *, void *) {
  if (nparam != 8) return mft::aot::kBadArgCount;
  AttentionShape s;
  SeqEnds e;
  float scale = 0.f;
  if (int st = parse(0, 3, 4, params, ndims, shapes, dtypes, &s, &e, &scale); st) return st;
  if (!is_f32(dtypes[6]) || !is_f32(dtypes[7])) return mft::aot::kBadDtype;
  if (!shape_is(ndims[6], shapes[6], {s.batch, s.heads, s.seq, s.dim}) ||
      !shape_is(ndims[7], shapes[7], {s.batch, s.heads, s.seq})) {
    return mft::aot::kBadShape;
  }
  try {
    mft::kernels::attention_forward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                    static_cast<const float *>(params[2]), static_cast<float *>(params[6]),
                                    static_cast<float *>(params[7]), s, scale, e);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

MFT_AOT_EXPORT int MftAttentionBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                        const char **dtypes, void *, void *) {
  if (nparam != 12) return mft::aot::kBadArgCount;
  AttentionShape s;
  SeqEnds e;
  float scale = 0.f;
  if (int st = parse(1, 6, 7, params, ndims, shapes, dtypes, &s, &e, &scale); st) return st;
  for (int i : {0, 4, 5, 9, 10, 11})
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  const std::initializer_list<int64_t> qshape = {s.batch, s.heads, s.seq, s.dim};
  const std::initializer_list<int64_t> kshape = {s.batch, s.kv_heads, s.kv_seq, s.dim};
  if (!shape_is(ndims[0], shapes[0], qshape) || !shape_is(ndims[4], shapes[4], qshape) ||
      !shape_is(ndims[5], shapes[5], {s.batch, s.heads, s.seq}) ||
      !shape_is(ndims[9], shapes[9], qshape) || !shape_is(ndims[10], shapes[10], kshape) ||
      !shape_is(ndims[11], shapes[11], kshape)) {
    return mft::aot::kBadShape;
  }
  auto f = [&](int i) { return static_cast<const float *>(params[i]); };
  auto w = [&](int i) { return static_cast<float *>(params[i]); };
  try {
    mft::kernels::attention_backward(f(0), f(1), f(2), f(3), f(4), f(5), w(9), w(10), w(11), s, scale, e);
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
