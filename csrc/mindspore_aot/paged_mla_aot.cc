// MindSpore aot entry point for MLA decode attention over the paged latent cache (python/mft/ops/paged_mla.py).
//   MftPagedMla(q_latent (B, H, Sq, R) f32, q_rope (B, H, Sq, Dr) f32, latent_new (B, Sq, R) f32,
//               rope_new (B, Sq, Dr) f32, latent_pool (N, 1, R) f32, rope_pool (N, 1, Dr) f32,
//               block_tables (B, M) i32, context_lens (B,) i32, scale (1,) f32,
//               meta (2,) i32 = [block_size, slot_offset])
//     -> out (B, Sq, H, R) f32
// The chunk's latent / rope key may also come with a head axis of 1 ((B, 1, Sq, .)), the pools without
// one ((N, .)): only the last dimension and the element count are checked for those.
#include <cstring>
#include <exception>

#include "kernels/paged_mla.h"
#include "mindspore_aot/aot_abi.h"

namespace {

bool is_f32(const char *dt) { return mft::aot::parse_dtype(dt) == mft::aot::DType::kF32; }
bool is_i32(const char *dt) { return dt != nullptr && std::strcmp(dt, "int32") == 0; }

// A tensor whose last dimension is `last` and that holds `rows` such rows.
bool rows_of(int ndim, const int64_t *shape, int64_t rows, int64_t last) {
  return ndim >= 1 && shape[ndim - 1] == last && mft::aot::numel(ndim, shape) == rows * last;
}

}  // namespace

MFT_AOT_EXPORT int MftPagedMla(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                               void *) {
  if (nparam != 11) return mft::aot::kBadArgCount;
  for (int i : {0, 1, 2, 3, 4, 5, 8, 10})
    if (!is_f32(dtypes[i])) return mft::aot::kBadDtype;
  for (int i : {6, 7, 9})
    if (!is_i32(dtypes[i])) return mft::aot::kBadDtype;
  if (ndims[0] != 4 || ndims[1] != 4 || ndims[6] != 2 || ndims[7] != 1 || ndims[10] != 4 ||
      mft::aot::numel(ndims[8], shapes[8]) != 1 || mft::aot::numel(ndims[9], shapes[9]) != 2 ||
      (ndims[4] != 2 && ndims[4] != 3) || ndims[4] != ndims[5]) {
    return mft::aot::kBadShape;
  }
  mft::kernels::PagedMlaShape s;
  s.batch = shapes[0][0], s.heads = shapes[0][1], s.q_len = shapes[0][2], s.rank = shapes[0][3];
  s.rope_dim = shapes[1][3];
  s.pool_slots = shapes[4][0];
  s.max_blocks = shapes[6][1];
  const int64_t *qr = shapes[1], *o = shapes[10];
  if (qr[0] != s.batch || qr[1] != s.heads || qr[2] != s.q_len ||
      !rows_of(ndims[2], shapes[2], s.batch * s.q_len, s.rank) ||
      !rows_of(ndims[3], shapes[3], s.batch * s.q_len, s.rope_dim) ||
      !rows_of(ndims[4], shapes[4], s.pool_slots, s.rank) || !rows_of(ndims[5], shapes[5], s.pool_slots, s.rope_dim) ||
      shapes[5][0] != s.pool_slots || shapes[6][0] != s.batch || shapes[7][0] != s.batch || o[0] != s.batch ||
      o[1] != s.q_len || o[2] != s.heads || o[3] != s.rank) {
    return mft::aot::kBadShape;
  }
  const int32_t *meta = static_cast<const int32_t *>(params[9]);
  s.block_size = meta[0], s.slot_offset = meta[1];
  const int32_t *table = static_cast<const int32_t *>(params[6]);
  const int32_t *lens = static_cast<const int32_t *>(params[7]);
  if (!mft::kernels::check_paged_mla_args(s, table, lens).empty()) return mft::aot::kBadValue;
  auto f = [&](int i) { return static_cast<const float *>(params[i]); };
  try {
    mft::kernels::paged_mla_forward(f(0), f(1), f(2), f(3), f(4), f(5), table, lens, static_cast<float *>(params[10]),
                                    s, *f(8));
  } catch (const std::exception &) {
    return mft::aot::kInternal;
  }
  return mft::aot::kOk;
}
