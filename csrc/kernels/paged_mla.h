// Multi-head latent attention (DeepSeek-V2/V3 MLA) decode over mft serve's
// paged latent cache, in the absorbed form, fp32.
//
// The pools hold per token (and layer) the compressed latent (rank numbers,
// kv_lora_rank) and the shared rotated rope key (rope_dim numbers) by slot:
// latent_pool (slots, rank), rope_pool (slots, rope_dim) (the runner's
// (slots, 1, .) pools). A row's token at position p lives in slot
//   slot_offset + table[p / block_size] * block_size + p % block_size.
// The caller has absorbed W_UK (kv_b_proj's key part) into the no-rope query:
// q_latent (batch, heads, q_len, rank) = q_nope @ W_UK[h], q_rope (batch, heads,
// q_len, rope_dim) is the rotated rope query. For every head
//   score(t) = scale * (q_latent . latent[t] + q_rope . rope[t]),
//   out = softmax(score) . latent                       (batch, q_len, heads, rank)
// and the caller applies W_UV and o_proj. Query i of row b sits at position
// context_lens[b] - q_len + i and sees positions <= its own; the chunk's own
// latent / rope key come from latent_new (batch, q_len, rank) / rope_new
// (batch, q_len, rope_dim), the cached context_lens[b] - q_len positions from
// the pools (as paged_attention.h's k_new / v_new; the pools may hold the
// chunk too, those slots are then simply not read).
//
// One task per batch row (all heads together, so each latent row is read once
// per block for the scores and once for the output), or per (row, head range)
// when there are fewer rows than threads; blocks are visited once with an
// online softmax. Each output element is computed by one task in a fixed
// order: results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

struct PagedMlaShape {
  int64_t batch = 0, q_len = 0, heads = 0;
  int64_t rank = 0;         // kv_lora_rank: latent numbers per token (also the output width)
  int64_t rope_dim = 0;     // qk_rope_head_dim
  int64_t pool_slots = 0;   // rows of latent_pool / rope_pool
  int64_t max_blocks = 0;   // columns of the block table
  int64_t block_size = 0;   // a power of two
  int64_t slot_offset = 0;  // added to every slot (layer * slots_per_layer)
};

// Empty string if the shape, block table and lengths are usable, else what is wrong.
std::string check_paged_mla_args(const PagedMlaShape &s, const int32_t *block_table, const int32_t *context_lens);

// threads <= 0: attention_threads(), used only when the work pays for them.
void paged_mla_forward(const float *q_latent, const float *q_rope, const float *latent_new, const float *rope_new,
                       const float *latent_pool, const float *rope_pool, const int32_t *block_table,
                       const int32_t *context_lens, float *out, const PagedMlaShape &s, float scale, int threads = 0);

}  // namespace mft::kernels
