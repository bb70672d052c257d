// Fused attention, FlashAttention-2 style, fp32, layout (B, heads, S, D); causal
// (decoders) or bidirectional within documents (vision encoders, `causal` = false).
// 64x64 tiles; every tile product (S = Q K^T, P V, dP, dV, dK, dQ) runs on the
// register-blocked micro-kernel in tile_gemm.h.
//
// Forward: per query tile, keys are visited tile by tile with an online
// softmax (running max m and sum l), so memory is O(S * D) instead of the
// O(S^2) score matrix. It also writes the log-sum-exp of every row,
// lse = m + log(l), which is all the backward needs to recompute the
// probabilities tile by tile (P = exp(scale * q.k - lse)).
//
// GQA: query head h reads kv head h / (heads / kv_heads).
// Packed sequences: `seq_ends` (ends_rows x n_ends int32, ends_rows = 1 or B)
// holds each sample's cumulative document ends (non-decreasing, <= S); a
// query attends only to keys of its own document (positions after the last
// end form one more document). With seq_ends == nullptr every row is one
// document (plain causal).
//
// Query offset (context parallelism: a rank's chunk of queries against the
// keys of the sequence up to it): q holds `seq` query rows that are the
// positions [q_offset, q_offset + seq) of a sequence of `kv_seq` keys (k, v
// are (B, KVH, kv_seq, D); kv_seq = 0 means kv_seq = seq). Causal: query i
// sees the keys j <= q_offset + i; seq_ends are positions in the key
// sequence (ends <= kv_seq). q_offset + seq must be <= kv_seq, so every query
// sees at least itself. Keys no query sees get zero dk, dv.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

struct AttentionShape {
  int64_t batch = 0, heads = 0, kv_heads = 0, seq = 0, dim = 0;
  // false: bidirectional within each document (vision towers: a query sees every
  // key of its own document, before and after it)
  bool causal = true;
  int64_t kv_seq = 0;    // keys per (batch, kv head); 0: the same as seq
  int64_t q_offset = 0;  // position of query row 0 in the key sequence
  int64_t keys() const { return kv_seq > 0 ? kv_seq : seq; }
};

struct SeqEnds {
  const int32_t *ends = nullptr;  // nullptr: no packing
  int64_t rows = 0;               // 1 (shared by the batch) or batch
  int64_t count = 0;              // ends per row
};

// Empty string if the shape / seq_ends are usable, else what is wrong.
std::string check_attention_args(const AttentionShape &s, const SeqEnds &ends);

// Work is split over (batch, head) for the forward and (batch, kv head) for
// the backward; every output element is computed by one thread in a fixed
// order, so results are bit-identical for any thread count (same CPU path).
// threads <= 0: attention_threads().

// out (B, H, S, D), lse (B, H, S); k, v (B, KVH, keys(), D).
void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                       const AttentionShape &s, float scale, const SeqEnds &ends, int threads = 0);

// Gradients of sum(out * dout) w.r.t. q, k, v. `out` and `lse` are the
// forward's outputs. dq (B, H, S, D), dk and dv (B, KVH, keys(), D).
void attention_backward(const float *dout, const float *q, const float *k, const float *v,
                        const float *out, const float *lse, float *dq, float *dk, float *dv,
                        const AttentionShape &s, float scale, const SeqEnds &ends, int threads = 0);

// Threads the attention kernels use: MFT_ATTENTION_THREADS (env) if set,
// else the number of hardware threads (attention is compute-bound, unlike
// RMSNorm, so a second core pays off).
int attention_threads();

}  // namespace mft::kernels
