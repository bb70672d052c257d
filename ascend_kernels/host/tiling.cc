#include "tiling.h"

#include <cmath>

namespace mft::ascend {
namespace {

constexpr uint32_t kF32 = 4;

// Splits `tasks` over at most `core_num` cores as evenly as possible.
void split(uint32_t tasks, uint32_t core_num, uint32_t *block_dim, uint32_t *per_core, uint32_t *big) {
  *block_dim = tasks < core_num ? (tasks == 0 ? 1 : tasks) : core_num;
  *per_core = tasks / *block_dim;
  *big = tasks % *block_dim;
}

}  // namespace

uint32_t flash_attention_ub_bytes(uint32_t q_tile, uint32_t kv_tile, uint32_t dim) {
  // q tile; k and v tiles double-buffered; output accumulator; one score row
  // of kv_tile (+ one 8-float block for the rescale factor); one dim-long scratch row; running max / sum per query row
  // (rounded to 8 floats = one 32-byte block each).
  const uint32_t rows8 = (q_tile + 7) / 8 * 8, kv8 = (kv_tile + 7) / 8 * 8;
  return kF32 * (q_tile * dim + 2 * 2 * kv_tile * dim + q_tile * dim + kv8 + 8 + dim + 2 * rows8 + 64);
}

std::string flash_attention_tiling(const FlashAttentionProblem &p, uint32_t ub_bytes, uint32_t core_num,
                                   FlashAttentionTiling *out) {
  if (p.batch <= 0 || p.heads <= 0 || p.kv_heads <= 0 || p.seq <= 0 || p.dim <= 0)
    return "batch, heads, kv_heads, seq and head_dim must be positive";
  if (p.heads % p.kv_heads != 0) return "heads must be a multiple of kv_heads";
  if (p.dim % 8 != 0) return "head_dim must be a multiple of 8 (32-byte fp32 blocks)";
  if (core_num == 0) return "core_num must be positive";
  const int64_t limit = int64_t{1} << 31;
  if (p.batch * p.heads * p.seq * p.dim >= limit) return "q has too many elements for 32-bit tiling offsets";
  // Largest tiles that fit: prefer a long kv tile (fewer online-softmax
  // rescales), then the longest q tile; neither longer than the sequence.
  static const uint32_t kv_opts[] = {256, 128, 64, 32, 16, 8};
  static const uint32_t q_opts[] = {128, 64, 32, 16, 8, 4, 2, 1};
  const uint32_t seq = static_cast<uint32_t>(p.seq), dim = static_cast<uint32_t>(p.dim);
  for (uint32_t kv : kv_opts) {
    const uint32_t kv_tile = kv < seq ? kv : (seq + 7) / 8 * 8;
    for (uint32_t q : q_opts) {
      const uint32_t q_tile = q < seq ? q : seq;
      const uint32_t need = flash_attention_ub_bytes(q_tile, kv_tile, dim);
      if (need > ub_bytes) continue;
      FlashAttentionTiling t{};
      t.batch = static_cast<uint32_t>(p.batch);
      t.heads = static_cast<uint32_t>(p.heads);
      t.kvHeads = static_cast<uint32_t>(p.kv_heads);
      t.seq = seq;
      t.dim = dim;
      t.qTile = q_tile;
      t.kvTile = kv_tile;
      t.qTiles = (seq + q_tile - 1) / q_tile;
      t.tasks = t.batch * t.heads * t.qTiles;
      split(t.tasks, core_num, &t.blockDim, &t.tasksPerCore, &t.bigCores);
      t.ubBytes = need;
      t.scale = p.scale > 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(dim));
      *out = t;
      return "";
    }
  }
  return "head_dim too large: even 1 query row x 8 key rows do not fit in the unified buffer";
}

uint32_t moe_gating_ub_bytes(uint32_t rows_per_tile, uint32_t experts, uint32_t top_k) {
  // logits tile (double-buffered), scores and choice rows, bias, weights and
  // ids tiles (rounded to 8 per row), plus one experts-long scratch row.
  const uint32_t k8 = (top_k + 7) / 8 * 8;
  return kF32 * (2 * rows_per_tile * experts + 2 * experts + experts + 2 * rows_per_tile * k8 + experts + 64);
}

std::string moe_gating_tiling(const MoeGatingProblem &p, uint32_t ub_bytes, uint32_t core_num,
                              MoeGatingTiling *out) {
  if (p.tokens < 0 || p.experts <= 0) return "logits must be (tokens, experts) with experts > 0";
  if (p.experts % 8 != 0) return "experts must be a multiple of 8 (32-byte fp32 rows)";
  if (p.top_k <= 0 || p.top_k > p.experts) return "top_k must be in [1, experts]";
  if (p.n_group <= 0 || p.experts % p.n_group != 0) return "experts must be a multiple of n_group";
  if (p.topk_group <= 0 || p.topk_group > p.n_group) return "topk_group must be in [1, n_group]";
  if (p.n_group > 1 && p.topk_group * (p.experts / p.n_group) < p.top_k)
    return "topk_group groups hold fewer than top_k experts";
  if (p.n_group > 64) return "n_group above 64 is not supported by the kernel";
  if (p.top_k > 32) return "top_k above 32 is not supported by the kernel";
  if (core_num == 0) return "core_num must be positive";
  if (p.tokens >= (int64_t{1} << 31) / p.experts) return "too many tokens for 32-bit tiling offsets";
  const uint32_t e = static_cast<uint32_t>(p.experts), k = static_cast<uint32_t>(p.top_k);
  uint32_t rows = 64;
  while (rows > 1 && moe_gating_ub_bytes(rows, e, k) > ub_bytes) rows /= 2;
  if (moe_gating_ub_bytes(rows, e, k) > ub_bytes) return "experts too many for the unified buffer";
  MoeGatingTiling t{};
  t.tokens = static_cast<uint32_t>(p.tokens);
  t.experts = e;
  t.topK = k;
  t.sigmoid = p.sigmoid ? 1 : 0;
  t.nGroup = static_cast<uint32_t>(p.n_group);
  t.topkGroup = static_cast<uint32_t>(p.topk_group);
  t.normTopkProb = p.norm_topk_prob ? 1 : 0;
  t.hasBias = p.has_bias ? 1 : 0;
  t.routedScalingFactor = p.routed_scaling_factor;
  t.rowsPerTile = rows;
  split(t.tokens, core_num, &t.blockDim, &t.tokensPerCore, &t.bigCores);
  *out = t;
  return "";
}

}  // namespace mft::ascend
