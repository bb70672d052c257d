// MoE routing on the host, fp32: router gating (softmax or sigmoid scores,
// group-limited top-k, optional renormalisation and scaling) and the token
// permutation that groups (token, slot) rows by expert, with their backwards.
//
// Layouts: logits (T, E); topk weights (T, k) fp32 and ids (T, k) int32, each
// row sorted by descending selection score (ties: lower expert id first,
// like a stable top-k). Permuted rows (T*k, H) are grouped by expert in
// ascending expert id and, inside an expert, in (token, slot) order — the
// order a capacity-free "first come" dispatch sees tokens. row_map[r] is the
// flat (token * k + slot) index sorted row r came from.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

struct GatingConfig {
  bool sigmoid = false;      // false: softmax scores; true: sigmoid (DeepSeek-V3)
  int64_t n_group = 1;       // experts split in n_group equal groups...
  int64_t topk_group = 1;    // ...and only the best topk_group groups are eligible
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.f;
};

// Empty if (tokens, experts, k, cfg) is usable, else what is wrong.
std::string check_gating_args(int64_t tokens, int64_t experts, int64_t k, const GatingConfig &cfg);

// bias: (E,) e_score_correction_bias added to the scores for selection only, or nullptr.
void moe_gating_forward(const float *logits, const float *bias, float *weights, int32_t *ids,
                        int64_t tokens, int64_t experts, int64_t k, const GatingConfig &cfg);

// dlogits (T, E) from dweights (T, k); the selection (ids) is recomputed by
// the caller's forward and passed in (it has no gradient).
void moe_gating_backward(const float *dweights, const float *logits, const int32_t *ids,
                         float *dlogits, int64_t tokens, int64_t experts, int64_t k,
                         const GatingConfig &cfg);

// False if some id is outside [0, experts).
bool ids_in_range(const int32_t *ids, int64_t n, int64_t experts);

// x (T, H) -> x_sorted (T*k, H), row_map (T*k,), counts (E,) = rows per expert.
void moe_permute(const float *x, const int32_t *ids, float *x_sorted, int32_t *row_map,
                 int32_t *counts, int64_t tokens, int64_t hidden, int64_t k, int64_t experts);

// Inverse of row_map (flat index -> sorted row) into inv (T*k,); false if
// row_map is not a permutation of [0, T*k).
bool invert_row_map(const int32_t *row_map, int64_t n, int32_t *inv);

// out[t] = sum_j w[t, j] * y_sorted[inv[t*k + j]] (w == nullptr: weights 1).
// Summed in slot order per token, so the result does not depend on threads.
void moe_unpermute(const float *y_sorted, const int32_t *inv, const float *weights, float *out,
                   int64_t tokens, int64_t hidden, int64_t k);

// Given dout (T, H): dy_sorted[r] = w[src] * dout[t], dweights[src] = <y_sorted[r], dout[t]>,
// src = row_map[r], t = src / k.
void moe_unpermute_backward(const float *dout, const float *y_sorted, const int32_t *row_map,
                            const float *weights, float *dy_sorted, float *dweights,
                            int64_t tokens, int64_t hidden, int64_t k);

}  // namespace mft::kernels
