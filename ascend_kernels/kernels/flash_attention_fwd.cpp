// Ascend C causal flash attention forward, fp32, layout (B, heads, S, D), GQA.
// Same contract as csrc/kernels/attention.h's attention_forward (without
// packed documents): out (B, H, S, D) and lse (B, H, S) for the backward.
//
// One task = one (batch, head, query tile); the host tiling
// (host/tiling.cc: flash_attention_tiling) splits tasks evenly over the AI
// cores. Per task the query tile stays in the unified buffer while key/value
// tiles stream through double-buffered queues (only tiles at or before the
// query tile: causal), with the online softmax (running max m, sum l) per
// query row. This first version uses the vector unit only (dot products as
// Mul + ReduceSum); moving Q.K^T and P.V to the Cube unit (Matmul API) is the
// next step. NOT COMPILED OR RUN: no CANN toolkit or Ascend device was
// available (see ../README.md).
#include "flash_attention_tiling.h"
#include "kernel_operator.h"
#include "sync.h"

using namespace AscendC;

namespace {

constexpr int32_t kKvBuffers = 2;
constexpr float kNegInf = -3.4028234663852886e38f;

class FlashAttentionFwd {
 public:
  __aicore__ inline FlashAttentionFwd() {}

  __aicore__ inline void Init(GM_ADDR q, GM_ADDR k, GM_ADDR v, GM_ADDR out, GM_ADDR lse,
                              const FlashAttentionTiling &t) {
    t_ = t;
    const uint64_t qElems = uint64_t(t.batch) * t.heads * t.seq * t.dim;
    const uint64_t kvElems = uint64_t(t.batch) * t.kvHeads * t.seq * t.dim;
    qGm_.SetGlobalBuffer((__gm__ float *)q, qElems);
    kGm_.SetGlobalBuffer((__gm__ float *)k, kvElems);
    vGm_.SetGlobalBuffer((__gm__ float *)v, kvElems);
    outGm_.SetGlobalBuffer((__gm__ float *)out, qElems);
    lseGm_.SetGlobalBuffer((__gm__ float *)lse, uint64_t(t.batch) * t.heads * t.seq);
    // Same sizes as host/tiling.cc: flash_attention_ub_bytes.
    const uint32_t rows8 = (t.qTile + 7) / 8 * 8, kv8 = (t.kvTile + 7) / 8 * 8;
    pipe_.InitBuffer(qQue_, 1, t.qTile * t.dim * sizeof(float));
    pipe_.InitBuffer(kQue_, kKvBuffers, t.kvTile * t.dim * sizeof(float));
    pipe_.InitBuffer(vQue_, kKvBuffers, t.kvTile * t.dim * sizeof(float));
    pipe_.InitBuffer(outQue_, 1, t.qTile * t.dim * sizeof(float));
    pipe_.InitBuffer(scoreBuf_, (kv8 + 8) * sizeof(float));  // + the alpha slot
    pipe_.InitBuffer(scratchBuf_, t.dim * sizeof(float));
    pipe_.InitBuffer(mBuf_, rows8 * sizeof(float));
    pipe_.InitBuffer(lBuf_, rows8 * sizeof(float));
    pipe_.InitBuffer(reduceBuf_, 64 * sizeof(float));
  }

  __aicore__ inline void Process() {
    uint32_t begin, count;
    mft_ascend::CoreRange(t_.tasksPerCore, t_.bigCores, &begin, &count);
    for (uint32_t task = begin; task < begin + count; ++task) RunTask(task);
  }

 private:
  __aicore__ inline void RunTask(uint32_t task) {
    const uint32_t bh = task / t_.qTiles, qt = task % t_.qTiles;
    const uint32_t b = bh / t_.heads, h = bh % t_.heads;
    const uint32_t kh = h / (t_.heads / t_.kvHeads);
    const uint32_t q0 = qt * t_.qTile;
    const uint32_t rows = q0 + t_.qTile <= t_.seq ? t_.qTile : t_.seq - q0;
    const uint64_t qBase = (uint64_t(b) * t_.heads + h) * t_.seq;
    const uint64_t kvBase = (uint64_t(b) * t_.kvHeads + kh) * t_.seq;

    LocalTensor<float> qLocal = qQue_.AllocTensor<float>();
    DataCopy(qLocal, qGm_[(qBase + q0) * t_.dim], rows * t_.dim);
    qQue_.EnQue(qLocal);
    qLocal = qQue_.DeQue<float>();
    LocalTensor<float> acc = outQue_.AllocTensor<float>();
    LocalTensor<float> m = mBuf_.Get<float>(), l = lBuf_.Get<float>();
    Duplicate(acc, 0.f, rows * t_.dim);
    mft_ascend::VectorToScalar();
    for (uint32_t i = 0; i < rows; ++i) {
      m.SetValue(i, kNegInf);
      l.SetValue(i, 0.f);
    }
    const uint32_t kvEnd = q0 + rows;  // causal: keys after the last query row are never visible
    for (uint32_t kv0 = 0; kv0 < kvEnd; kv0 += t_.kvTile) {
      const uint32_t n = kv0 + t_.kvTile <= kvEnd ? t_.kvTile : kvEnd - kv0;
      LocalTensor<float> kLocal = kQue_.AllocTensor<float>();
      LocalTensor<float> vLocal = vQue_.AllocTensor<float>();
      DataCopy(kLocal, kGm_[(kvBase + kv0) * t_.dim], n * t_.dim);
      DataCopy(vLocal, vGm_[(kvBase + kv0) * t_.dim], n * t_.dim);
      kQue_.EnQue(kLocal);
      vQue_.EnQue(vLocal);
      kLocal = kQue_.DeQue<float>();
      vLocal = vQue_.DeQue<float>();
      for (uint32_t i = 0; i < rows; ++i) {
        const uint32_t qi = q0 + i;
        if (qi < kv0) continue;
        const uint32_t visible = qi - kv0 + 1 < n ? qi - kv0 + 1 : n;
        OnlineSoftmaxRow(qLocal[i * t_.dim], kLocal, vLocal, acc[i * t_.dim], m, l, i, visible);
      }
      kQue_.FreeTensor(kLocal);
      vQue_.FreeTensor(vLocal);
    }
    Finish(acc, m, l, rows, qBase + q0);
    qQue_.FreeTensor(qLocal);
  }

  // One query row against `visible` keys of the current tile:
  // s_j = scale * q.k_j; m' = max(m, s); acc = acc * e^(m - m') + sum_j e^(s_j - m') v_j.
  __aicore__ inline void OnlineSoftmaxRow(const LocalTensor<float> &q, const LocalTensor<float> &k,
                                          const LocalTensor<float> &v, const LocalTensor<float> &accRow,
                                          const LocalTensor<float> &m, const LocalTensor<float> &l, uint32_t i,
                                          uint32_t visible) {
    LocalTensor<float> score = scoreBuf_.Get<float>();
    LocalTensor<float> scratch = scratchBuf_.Get<float>();
    LocalTensor<float> red = reduceBuf_.Get<float>();
    float rowMax = m.GetValue(i);
    for (uint32_t j = 0; j < visible; ++j) {
      Mul(scratch, q, k[j * t_.dim], t_.dim);
      PipeBarrier<PIPE_V>();
      ReduceSum(red, scratch, red[8], t_.dim);
      mft_ascend::VectorToScalar();
      const float s = red.GetValue(0) * t_.scale;
      score.SetValue(j, s);
      rowMax = s > rowMax ? s : rowMax;
      mft_ascend::ScalarToVector();
    }
    // p_j = exp(s_j - m'), and alpha = exp(m_old - m') in the slot after the scores.
    score.SetValue(visible, m.GetValue(i));
    mft_ascend::ScalarToVector();
    Adds(score, score, -rowMax, visible + 1);
    PipeBarrier<PIPE_V>();
    Exp(score, score, visible + 1);
    PipeBarrier<PIPE_V>();
    ReduceSum(red, score, red[8], visible);
    mft_ascend::VectorToScalar();
    const float alpha = score.GetValue(visible);
    const float rowSum = red.GetValue(0);
    l.SetValue(i, l.GetValue(i) * alpha + rowSum);
    m.SetValue(i, rowMax);
    mft_ascend::ScalarToVector();
    Muls(accRow, accRow, alpha, t_.dim);
    PipeBarrier<PIPE_V>();
    for (uint32_t j = 0; j < visible; ++j) {
      mft_ascend::VectorToScalar();
      const float p = score.GetValue(j);
      Axpy(accRow, v[j * t_.dim], p, t_.dim);
      PipeBarrier<PIPE_V>();
    }
  }

  // out = acc / l per row; lse = m + log(l); both copied to global memory.
  __aicore__ inline void Finish(LocalTensor<float> &acc, const LocalTensor<float> &m, const LocalTensor<float> &l,
                                uint32_t rows, uint64_t rowBase) {
    for (uint32_t i = 0; i < rows; ++i) {
      mft_ascend::VectorToScalar();
      const float inv = 1.f / l.GetValue(i);
      mft_ascend::ScalarToVector();
      Muls(acc[i * t_.dim], acc[i * t_.dim], inv, t_.dim);
    }
    PipeBarrier<PIPE_V>();
    Ln(l, l, rows);
    PipeBarrier<PIPE_V>();
    Add(l, l, m, rows);  // l now holds the lse of each row
    outQue_.EnQue(acc);
    LocalTensor<float> outLocal = outQue_.DeQue<float>();
    DataCopy(outGm_[rowBase * t_.dim], outLocal, rows * t_.dim);
    mft_ascend::VectorToScalar();
    event_t e = static_cast<event_t>(GetTPipePtr()->FetchEventID(HardEvent::V_MTE3));
    SetFlag<HardEvent::V_MTE3>(e);
    WaitFlag<HardEvent::V_MTE3>(e);
    DataCopyExtParams params{1, static_cast<uint32_t>(rows * sizeof(float)), 0, 0, 0};
    DataCopyPad(lseGm_[rowBase], l, params);  // rows need not fill a 32-byte block
    outQue_.FreeTensor(outLocal);
    event_t done = static_cast<event_t>(GetTPipePtr()->FetchEventID(HardEvent::MTE3_V));
    SetFlag<HardEvent::MTE3_V>(done);
    WaitFlag<HardEvent::MTE3_V>(done);  // m/l are rewritten by the next task
  }

  TPipe pipe_;
  TQue<QuePosition::VECIN, 1> qQue_;
  TQue<QuePosition::VECIN, kKvBuffers> kQue_, vQue_;
  TQue<QuePosition::VECOUT, 1> outQue_;
  TBuf<TPosition::VECCALC> scoreBuf_, scratchBuf_, mBuf_, lBuf_, reduceBuf_;
  GlobalTensor<float> qGm_, kGm_, vGm_, outGm_, lseGm_;
  FlashAttentionTiling t_;
};

}  // namespace

extern "C" __global__ __aicore__ void mft_flash_attention_fwd(GM_ADDR q, GM_ADDR k, GM_ADDR v, GM_ADDR out,
                                                              GM_ADDR lse, FlashAttentionTiling tiling) {
  FlashAttentionFwd op;
  op.Init(q, k, v, out, lse, tiling);
  op.Process();
}
