// MindSpore aot entry point for paged decode attention (python/mft/ops/paged_attention.py).
//   MftPagedAttention(q (B, H, Sq, D) f32, k_new (B, KVH, Sq, D) f32, v_new (B, KVH, Sq, D) f32,
//                     k_pool (N, KVH, D) f32, v_pool (N, KVH, D) f32, block_tables (B, M) i32,
//                     context_lens (B,) i32, scale (1,) f32, meta (2,) i32 = [block_size, slot_offset])
//     -> out (B, Sq, H, D) f32
// and MftPagedAttentionInt8 over int8 pools with per-kv-head scales (at the end of this file).
#include <cstring>
#include <exception>

#include "kernels/paged_attention.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is_f32(const char *dt) { return mft::aot::parse_dtype(dt) == mft::aot::DType::kF32; }
bool is_i32(const char *dt) { return dt != nullptr && std::strcmp(dt, "int32") == 0; }

// The shapes both entry points share: q (0), k_new (1), v_new (2), the pools (3, 4), block_tables (5),
// context_lens (6), meta (`meta`, 2 x i32) and the output (`out`); fills the kernel shape and reads meta,
// the table and the lengths. kBadShape / kBadValue on anything that does not fit.
int parse_paged(void **params, int *ndims, int64_t **shapes, int meta, int out, mft::kernels::PagedAttentionShape *s,
                const int32_t **table, const int32_t **lens) {
  if (ndims[0] != 4 || ndims[1] != 4 || ndims[3] != 3 || ndims[5] != 2 || ndims[6] != 1 || ndims[out] != 4 ||
      mft::aot::numel(ndims[meta], shapes[meta]) != 2 ||
      !mft::aot::same_shape(ndims[1], shapes[1], ndims[2], shapes[2]) ||
      !mft::aot::same_shape(ndims[3], shapes[3], ndims[4], shapes[4])) {
    return mft::aot::kBadShape;
  }
  s->batch = shapes[0][0], s->heads = shapes[0][1], s->q_len = shapes[0][2], s->dim = shapes[0][3];
  s->kv_heads = shapes[1][1];
  s->pool_slots = shapes[3][0];
  s->max_blocks = shapes[5][1];
  const int64_t *kn = shapes[1], *kp = shapes[3], *o = shapes[out];
  if (kn[0] != s->batch || kn[2] != s->q_len || kn[3] != s->dim || kp[1] != s->kv_heads || kp[2] != s->dim ||
      shapes[5][0] != s->batch || shapes[6][0] != s->batch || o[0] != s->batch || o[1] != s->q_len ||
      o[2] != s->heads || o[3] != s->dim) {
    return mft::aot::kBadShape;
  }
  const int32_t *m = static_cast<const int32_t *>(params[meta]);
  s->block_size = m[0], s->slot_offset = m[1];
  *table = static_cast<const int32_t *>(params[5]);
  *lens = static_cast<const int32_t *>(params[6]);
  if (!mft::kernels::check_paged_attention_args(*s, *table, *lens).empty()) return mft::aot::kBadValue;
  return mft::aot::kOk;
}

}  // namespace

MFT_AOT_EXPORT int MftPagedAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *, void *) {
  if (nparam != 10) return mft::aot::kBadArgCount;
  for (int i : {0, 1, 2, 3, 4, 7, 9})
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  for (int i : {5, 6, 8})
    if (!is_i32(dtypes[i])) return mft::aot::kBadDtype;
  if (mft::aot::numel(ndims[7], shapes[7]) != 1) return mft::aot::kBadShape;
  mft::kernels::PagedAttentionShape s;
  const int32_t *table = nullptr, *lens = nullptr;
  const int status = parse_paged(params, ndims, shapes, 8, 9, &s, &table, &lens);
  if (status != mft::aot::kOk) return status;
  auto f = [&](int i) { return static_cast<const float *>(params[i]); };
  try {
    mft::kernels::paged_attention_forward(f(0), f(1), f(2), f(3), f(4), table, lens, static_cast<float *>(params[9]),
                                          s, *f(7));
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}

// The int8 cache (mft quantize --scheme kv8):
//   MftPagedAttentionInt8(q, k_new, v_new (f32 as above), k_pool (N, KVH, D) i8, v_pool (N, KVH, D) i8,
//                         block_tables (B, M) i32, context_lens (B,) i32, k_scale (KVH,) f32, v_scale (KVH,) f32,
//                         scale (1,) f32, meta (2,) i32 = [block_size, slot_offset]) -> out (B, Sq, H, D) f32
MFT_AOT_EXPORT int MftPagedAttentionInt8(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                         void *, void *) {
  if (nparam != 12) return mft::aot::kBadArgCount;
  for (int i : {0, 1, 2, 7, 8, 9, 11})
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  for (int i : {5, 6, 10})
    if (!is_i32(dtypes[i])) return mft::aot::kBadDtype;
  for (int i : {3, 4})
    if (dtypes[i] == nullptr || std::strcmp(dtypes[i], "int8") != 0) return mft::aot::kBadDtype;
  if (ndims[7] != 1 || mft::aot::numel(ndims[9], shapes[9]) != 1 ||
      !mft::aot::same_shape(ndims[7], shapes[7], ndims[8], shapes[8])) {
    return mft::aot::kBadShape;
  }
  mft::kernels::PagedAttentionShape s;
  const int32_t *table = nullptr, *lens = nullptr;
  const int status = parse_paged(params, ndims, shapes, 10, 11, &s, &table, &lens);
  if (status != mft::aot::kOk) return status;
  if (shapes[7][0] != s.kv_heads) return mft::aot::kBadShape;
  auto f = [&](int i) { return static_cast<const float *>(params[i]); };
  auto i8 = [&](int i) { return static_cast<const int8_t *>(params[i]); };
  try {
    mft::kernels::paged_attention_forward_int8(f(0), f(1), f(2), i8(3), i8(4), f(7), f(8), table, lens,
                                               static_cast<float *>(params[11]), s, *f(9));
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
