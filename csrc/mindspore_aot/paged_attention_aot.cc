// MindSpore aot entry point for paged decode attention (python/mft/ops/paged_attention.py).
//   MftPagedAttention(q (B, Sq, H, D) f32, k_pool (N, KVH, D) f32, v_pool (N, KVH, D) f32,
//                     block_tables (B, M) i32, context_lens (B,) i32, scale (1,) f32,
//                     meta (2,) i32 = [block_size, slot_offset]) -> out (B, Sq, H, D) f32
#include <cstring>
#include <exception>

#include "kernels/paged_attention.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is_f32(const char *dt) { return mft::aot::parse_dtype(dt) == mft::aot::DType::kF32; }
bool is_i32(const char *dt) { return dt != nullptr && std::strcmp(dt, "int32") == 0; }

}  // namespace

MFT_AOT_EXPORT int MftPagedAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *, void *) {
  if (nparam != 8) return mft::aot::kBadArgCount;
  for (int i : {0, 1, 2, 5, 7})
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  for (int i : {3, 4, 6})
    if (!is_i32(dtypes[i])) return mft::aot::kBadDtype;
  if (ndims[0] != 4 || ndims[1] != 3 || ndims[3] != 2 || ndims[4] != 1 ||
      mft::aot::numel(ndims[5], shapes[5]) != 1 || mft::aot::numel(ndims[6], shapes[6]) != 2 ||
      !mft::aot::same_shape(ndims[1], shapes[1], ndims[2], shapes[2]) ||
      !mft::aot::same_shape(ndims[0], shapes[0], ndims[7], shapes[7])) {
    return mft::aot::kBadShape;
  }
  mft::kernels::PagedAttentionShape s;
  s.batch = shapes[0][0], s.q_len = shapes[0][1], s.heads = shapes[0][2], s.dim = shapes[0][3];
  s.pool_slots = shapes[1][0], s.kv_heads = shapes[1][1];
  s.max_blocks = shapes[3][1];
  if (shapes[1][2] != s.dim || shapes[3][0] != s.batch || shapes[4][0] != s.batch) return mft::aot::kBadShape;
  const int32_t *meta = static_cast<const int32_t *>(params[6]);
  s.block_size = meta[0], s.slot_offset = meta[1];
  const auto *table = static_cast<const int32_t *>(params[3]);
  const auto *lens = static_cast<const int32_t *>(params[4]);
  if (!mft::kernels::check_paged_attention_args(s, table, lens).empty()) return mft::aot::kBadValue;
  try {
    mft::kernels::paged_attention_forward(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                          static_cast<const float *>(params[2]), table, lens,
                                          static_cast<float *>(params[7]), s, *static_cast<const float *>(params[5]));
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
