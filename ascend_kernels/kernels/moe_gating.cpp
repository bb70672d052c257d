// Ascend C MoE router gating, fp32: logits (T, E) [+ bias (E,)] ->
// topk_weights (T, k) fp32, topk_ids (T, k) int32. Same semantics as
// csrc/kernels/moe_routing.cc (moe_gating_forward) and
// python/mft/ops/moe_routing.py: softmax or sigmoid scores, selection on
// scores + bias within the best topk_group of n_group groups (sum of the two
// best for sigmoid, the best for softmax; dropped groups score 0.0), weights
// = unbiased scores, optionally renormalised, times routed_scaling_factor.
//
// Tokens are split evenly over the AI cores (host/tiling.cc:
// moe_gating_tiling); each core streams `rowsPerTile` rows at a time. Scores
// are vector ops over the row; the group / top-k selection is a scalar loop
// (E is at most a few hundred, k <= 8 in the models we target).
// NOT COMPILED OR RUN: no CANN toolkit or Ascend device was available (see ../README.md).
#include "kernel_operator.h"
#include "moe_gating_tiling.h"
#include "sync.h"

using namespace AscendC;

namespace {

constexpr int32_t kBuffers = 2;
constexpr uint32_t kMaxGroups = 64;
constexpr uint32_t kMaxTopK = 32;
constexpr float kNormEps = 1e-20f;

class MoeGating {
 public:
  __aicore__ inline MoeGating() {}

  __aicore__ inline void Init(GM_ADDR logits, GM_ADDR bias, GM_ADDR weights, GM_ADDR ids,
                              const MoeGatingTiling &t) {
    t_ = t;
    k8_ = (t.topK + 7) / 8 * 8;
    logitsGm_.SetGlobalBuffer((__gm__ float *)logits, uint64_t(t.tokens) * t.experts);
    biasGm_.SetGlobalBuffer((__gm__ float *)bias, t.experts);
    weightsGm_.SetGlobalBuffer((__gm__ float *)weights, uint64_t(t.tokens) * t.topK);
    idsGm_.SetGlobalBuffer((__gm__ int32_t *)ids, uint64_t(t.tokens) * t.topK);
    // Same sizes as host/tiling.cc: moe_gating_ub_bytes.
    pipe_.InitBuffer(inQue_, kBuffers, t.rowsPerTile * t.experts * sizeof(float));
    pipe_.InitBuffer(wQue_, 1, t.rowsPerTile * k8_ * sizeof(float));
    pipe_.InitBuffer(idQue_, 1, t.rowsPerTile * k8_ * sizeof(int32_t));
    pipe_.InitBuffer(scoreBuf_, t.experts * sizeof(float));
    pipe_.InitBuffer(choiceBuf_, t.experts * sizeof(float));
    pipe_.InitBuffer(biasBuf_, t.experts * sizeof(float));
    pipe_.InitBuffer(workBuf_, (t.experts + 64) * sizeof(float));
    LocalTensor<float> b = biasBuf_.Get<float>();
    if (t.hasBias) {
      DataCopy(b, biasGm_, t.experts);
      event_t e = static_cast<event_t>(GetTPipePtr()->FetchEventID(HardEvent::MTE2_V));
      SetFlag<HardEvent::MTE2_V>(e);
      WaitFlag<HardEvent::MTE2_V>(e);
    } else {
      Duplicate(b, 0.f, t.experts);
    }
  }

  __aicore__ inline void Process() {
    uint32_t begin, count;
    mft_ascend::CoreRange(t_.tokensPerCore, t_.bigCores, &begin, &count);
    for (uint32_t r0 = begin; r0 < begin + count; r0 += t_.rowsPerTile) {
      const uint32_t rows = r0 + t_.rowsPerTile <= begin + count ? t_.rowsPerTile : begin + count - r0;
      LocalTensor<float> in = inQue_.AllocTensor<float>();
      DataCopy(in, logitsGm_[uint64_t(r0) * t_.experts], rows * t_.experts);
      inQue_.EnQue(in);
      in = inQue_.DeQue<float>();
      LocalTensor<float> w = wQue_.AllocTensor<float>();
      LocalTensor<int32_t> id = idQue_.AllocTensor<int32_t>();
      for (uint32_t r = 0; r < rows; ++r) Row(in[r * t_.experts], w[r * k8_], id[r * k8_]);
      inQue_.FreeTensor(in);
      wQue_.EnQue(w);
      idQue_.EnQue(id);
      w = wQue_.DeQue<float>();
      id = idQue_.DeQue<int32_t>();
      // Rows are k8_ apart in the buffer (32-byte aligned) and topK apart in memory.
      DataCopyExtParams params{static_cast<uint16_t>(rows), static_cast<uint32_t>(t_.topK * sizeof(float)), 0, 0, 0};
      DataCopyPad(weightsGm_[uint64_t(r0) * t_.topK], w, params);
      DataCopyPad(idsGm_[uint64_t(r0) * t_.topK], id, params);
      wQue_.FreeTensor(w);
      idQue_.FreeTensor(id);
    }
  }

 private:
  __aicore__ inline void Row(const LocalTensor<float> &logits, const LocalTensor<float> &w,
                             const LocalTensor<int32_t> &id) {
    const uint32_t e = t_.experts;
    LocalTensor<float> s = scoreBuf_.Get<float>(), c = choiceBuf_.Get<float>();
    LocalTensor<float> work = workBuf_.Get<float>(), bias = biasBuf_.Get<float>();
    if (t_.sigmoid) {  // 1 / (1 + exp(-x))
      Muls(s, logits, -1.f, e);
      PipeBarrier<PIPE_V>();
      Exp(s, s, e);
      PipeBarrier<PIPE_V>();
      Adds(s, s, 1.f, e);
      PipeBarrier<PIPE_V>();
      Reciprocal(s, s, e);
    } else {  // exp(x - max) / sum
      ReduceMax(work, logits, work[64], e);
      mft_ascend::VectorToScalar();
      const float mx = work.GetValue(0);
      mft_ascend::ScalarToVector();
      Adds(s, logits, -mx, e);
      PipeBarrier<PIPE_V>();
      Exp(s, s, e);
      PipeBarrier<PIPE_V>();
      ReduceSum(work, s, work[64], e);
      mft_ascend::VectorToScalar();
      const float inv = 1.f / work.GetValue(0);
      mft_ascend::ScalarToVector();
      Muls(s, s, inv, e);
    }
    PipeBarrier<PIPE_V>();
    Add(c, s, bias, e);
    mft_ascend::VectorToScalar();
    if (t_.nGroup > 1) MaskGroups(c);
    // Top-k by repeated selection (descending, ties to the lower id), taken experts set to -inf.
    float sum = 0.f;
    for (uint32_t j = 0; j < t_.topK; ++j) {
      uint32_t best = 0;
      float bv = -3.4028234663852886e38f;
      bool found = false;
      for (uint32_t x = 0; x < e; ++x) {
        const float v = c.GetValue(x);
        if (!found || v > bv) {
          bv = v;
          best = x;
          found = true;
        }
      }
      c.SetValue(best, -3.4028234663852886e38f);
      const float sv = s.GetValue(best);
      id.SetValue(j, static_cast<int32_t>(best));
      w.SetValue(j, sv);
      sum += sv;
    }
    const float mul = t_.normTopkProb ? t_.routedScalingFactor / (sum + kNormEps) : t_.routedScalingFactor;
    for (uint32_t j = 0; j < t_.topK; ++j) w.SetValue(j, w.GetValue(j) * mul);
    mft_ascend::ScalarToVector();
  }

  // Keeps the best topkGroup groups; the other groups' experts get choice 0.0.
  __aicore__ inline void MaskGroups(const LocalTensor<float> &c) {
    const uint32_t size = t_.experts / t_.nGroup;
    float score[kMaxGroups];
    bool kept[kMaxGroups];
    for (uint32_t g = 0; g < t_.nGroup; ++g) {
      float a = -3.4028234663852886e38f, b = -3.4028234663852886e38f;
      for (uint32_t x = 0; x < size; ++x) {
        const float v = c.GetValue(g * size + x);
        if (v > a) {
          b = a;
          a = v;
        } else if (v > b) {
          b = v;
        }
      }
      score[g] = t_.sigmoid && size > 1 ? a + b : a;
      kept[g] = false;
    }
    for (uint32_t n = 0; n < t_.topkGroup; ++n) {
      uint32_t best = t_.nGroup;
      for (uint32_t g = 0; g < t_.nGroup; ++g) {
        if (!kept[g] && (best == t_.nGroup || score[g] > score[best])) best = g;
      }
      kept[best] = true;
    }
    for (uint32_t g = 0; g < t_.nGroup; ++g) {
      if (kept[g]) continue;
      for (uint32_t x = 0; x < size; ++x) c.SetValue(g * size + x, 0.f);
    }
  }

  TPipe pipe_;
  TQue<QuePosition::VECIN, kBuffers> inQue_;
  TQue<QuePosition::VECOUT, 1> wQue_, idQue_;
  TBuf<TPosition::VECCALC> scoreBuf_, choiceBuf_, biasBuf_, workBuf_;
  GlobalTensor<float> logitsGm_, biasGm_, weightsGm_;
  GlobalTensor<int32_t> idsGm_;
  MoeGatingTiling t_;
  uint32_t k8_ = 8;
};

}  // namespace

extern "C" __global__ __aicore__ void mft_moe_gating(GM_ADDR logits, GM_ADDR bias, GM_ADDR weights, GM_ADDR ids,
                                                     MoeGatingTiling tiling) {
  if (tiling.nGroup > kMaxGroups || tiling.topK > kMaxTopK) return;  // rejected by the host tiling first
  MoeGating op;
  op.Init(logits, bias, weights, ids, tiling);
  op.Process();
}
