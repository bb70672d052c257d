// Decode attention over a paged KV cache (the layout of mft serve's paged
// runner, python/mft/serving/paged_runner.py), fp32.
//
// Pools hold keys/values by slot: k_pool, v_pool (slots, kv_heads, dim). A
// sequence's token at position p lives in slot
//   slot_offset + table[p / block_size] * block_size + p % block_size
// (slot_offset selects a layer of the runner's layers * slots pools).
// q (batch, heads, q_len, dim): the last q_len positions of each row (q_len = 1:
// decode; > 1: a prefill chunk). Query i of row b sits at position
// context_lens[b] - q_len + i and sees the keys at positions <= its own. The
// chunk's own keys/values come from k_new, v_new (batch, kv_heads, q_len, dim),
// not from the pools (the caller writes them to their slots afterwards), so the
// table only has to address the context_lens[b] - q_len cached positions.
// out is (batch, q_len, heads, dim).
//
// Per (batch row, kv head) task the query heads sharing the kv head (GQA) are
// processed together: each key/value row is read once for all of them, and
// blocks are visited one at a time with an online softmax (running max and
// sum), so no score matrix over the context is kept. Each output element is
// computed by one thread in a fixed order: results do not depend on threads.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

struct PagedAttentionShape {
  int64_t batch = 0, q_len = 0, heads = 0, kv_heads = 0, dim = 0;
  int64_t pool_slots = 0;    // rows of k_pool / v_pool
  int64_t max_blocks = 0;    // columns of the block table
  int64_t block_size = 0;    // a power of two
  int64_t slot_offset = 0;   // added to every slot (layer * slots_per_layer)
};

// Empty string if the shape, block table and lengths are usable (every
// cached slot inside the pool, q_len <= context length <= max_blocks *
// block_size), else what is wrong.
std::string check_paged_attention_args(const PagedAttentionShape &s, const int32_t *block_table,
                                       const int32_t *context_lens);

// threads <= 0: attention_threads(), used only when the work pays for them.
void paged_attention_forward(const float *q, const float *k_new, const float *v_new, const float *k_pool,
                             const float *v_pool, const int32_t *block_table, const int32_t *context_lens, float *out, const PagedAttentionShape &s, float scale,
                             int threads = 0);

// The same over an int8 cache (mft quantize --scheme kv8): a cached key/value row of kv head h
// is k_pool[...] * k_scale[h] / v_pool[...] * v_scale[h] (static per-head scales, one layer's);
// the chunk's own k_new / v_new stay float (the caller has already rounded them to that grid).
void paged_attention_forward_int8(const float *q, const float *k_new, const float *v_new, const int8_t *k_pool,
                                  const int8_t *v_pool, const float *k_scale, const float *v_scale,
                                  const int32_t *block_table, const int32_t *context_lens, float *out,
                                  const PagedAttentionShape &s, float scale, int threads = 0);

}  // namespace mft::kernels
