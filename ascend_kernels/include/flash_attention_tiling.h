// Tiling of the Ascend C flash attention forward (kernels/flash_attention_fwd.cpp),
// shared by the host tiling function and the kernel. Plain data, passed by
// value to the kernel launch, so no CANN headers here.
#pragma once

#include <cstdint>

struct FlashAttentionTiling {
  uint32_t batch;
  uint32_t heads;
  uint32_t kvHeads;
  uint32_t seq;
  uint32_t dim;        // head_dim, a multiple of 8 (32-byte DataCopy blocks of fp32)
  uint32_t qTile;      // query rows per tile
  uint32_t kvTile;     // key/value rows per tile
  uint32_t qTiles;     // ceil(seq / qTile)
  uint32_t tasks;      // batch * heads * qTiles: one task = one (b, h, query tile)
  uint32_t blockDim;   // AI cores launched, <= tasks
  uint32_t tasksPerCore;  // cores [0, bigCores) take tasksPerCore + 1 tasks, the rest tasksPerCore
  uint32_t bigCores;
  uint32_t ubBytes;    // unified-buffer bytes the tile buffers use (<= the budget given)
  float scale;         // softmax scale (1/sqrt(dim) unless given)
};
