// Host-side tiling for the Ascend C kernels: plain C++ (no CANN), so it is
// also compiled and unit-tested on CPU machines (csrc/tests/test_ascend_tiling.cc).
// Each function returns an empty string and fills `out`, or says what is wrong.
#pragma once

#include <cstdint>
#include <string>

#include "flash_attention_tiling.h"
#include "moe_gating_tiling.h"

namespace mft::ascend {

struct FlashAttentionProblem {
  int64_t batch, heads, kv_heads, seq, dim;
  float scale;  // <= 0: 1/sqrt(dim)
};

// ub_bytes: unified-buffer budget per AI core (e.g. 192 KiB on Atlas A2, minus reserve);
// core_num: vector cores available.
std::string flash_attention_tiling(const FlashAttentionProblem &p, uint32_t ub_bytes, uint32_t core_num,
                                   FlashAttentionTiling *out);

// UB bytes the flash attention kernel allocates for (q_tile, kv_tile, dim);
// kept next to the kernel's InitBuffer calls (same formula).
uint32_t flash_attention_ub_bytes(uint32_t q_tile, uint32_t kv_tile, uint32_t dim);

struct MoeGatingProblem {
  int64_t tokens, experts, top_k;
  bool sigmoid;
  int64_t n_group, topk_group;
  bool norm_topk_prob, has_bias;
  float routed_scaling_factor;
};

std::string moe_gating_tiling(const MoeGatingProblem &p, uint32_t ub_bytes, uint32_t core_num,
                              MoeGatingTiling *out);

uint32_t moe_gating_ub_bytes(uint32_t rows_per_tile, uint32_t experts, uint32_t top_k);

}  // namespace mft::ascend
