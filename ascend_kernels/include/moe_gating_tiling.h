// Tiling of the Ascend C MoE gating kernel (kernels/moe_gating.cpp), shared by
// the host tiling function and the kernel. Same semantics as
// csrc/kernels/moe_routing.h's moe_gating_forward.
#pragma once

#include <cstdint>

struct MoeGatingTiling {
  uint32_t tokens;
  uint32_t experts;      // a multiple of 8 (32-byte rows of fp32)
  uint32_t topK;
  uint32_t sigmoid;      // 0: softmax scores, 1: sigmoid scores (DeepSeek-V3)
  uint32_t nGroup;
  uint32_t topkGroup;
  uint32_t normTopkProb;
  uint32_t hasBias;
  float routedScalingFactor;
  uint32_t rowsPerTile;  // tokens copied into the unified buffer at once
  uint32_t blockDim;
  uint32_t tokensPerCore;  // cores [0, bigCores) take one token more
  uint32_t bigCores;
};
