// Token-level cross-entropy over the vocabulary, forward and backward, for
// the causal-LM loss: mean over the rows whose label is not ignore_index of
// logsumexp(logits[r]) - logits[r][label[r]]. One kernel each way instead of
// ~a dozen composed ops, and the forward never writes an N x V log-softmax.
#pragma once

#include <cstdint>

namespace mft::kernels {

// loss: the mean (0 when every label is ignored); lse[r]: logsumexp of row r
// (kept for the backward). Rows are independent; the mean sums rows in order
// in double, so the result does not depend on threads.
void cross_entropy_forward(const float *logits, const int32_t *labels, int64_t rows, int64_t vocab,
                           int32_t ignore_index, float *loss, float *lse);

// dlogits[r][j] = (exp(logits[r][j] - lse[r]) - [j == label[r]]) * dloss / count
// (rows with an ignored label get 0; count = rows not ignored, at least 1).
void cross_entropy_backward(const float *logits, const int32_t *labels, const float *lse, float dloss,
                            int64_t rows, int64_t vocab, int32_t ignore_index, float *dlogits);

// Checks labels before the kernels run: index of the first label outside
// [0, vocab) that is not ignore_index, or -1.
int64_t cross_entropy_bad_label(const int32_t *labels, int64_t rows, int64_t vocab, int32_t ignore_index);

}  // namespace mft::kernels
