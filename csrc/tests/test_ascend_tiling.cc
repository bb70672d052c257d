// The Ascend C kernels (ascend_kernels/) cannot be built or run here (no
// CANN, no device), but their host tiling functions are plain C++: check
// that every tiling fits the unified-buffer budget, covers every task /
// token exactly once across cores, and that bad problems are rejected.
#include <cmath>
#include <cstdio>
#include <vector>

#include "tiling.h"

namespace {

int g_failures = 0;

void expect(bool ok, const char *what, long long a = 0, long long b = 0) {
  if (!ok && ++g_failures <= 30) std::printf("FAIL %s (%lld, %lld)\n", what, a, b);
}

// Core ranges as the kernels compute them (kernels/sync.h: CoreRange).
void check_cover(uint32_t items, uint32_t block_dim, uint32_t per_core, uint32_t big, const char *what) {
  std::vector<int> seen(items, 0);
  for (uint32_t idx = 0; idx < block_dim; ++idx) {
    const uint32_t begin = idx * per_core + (idx < big ? idx : big);
    const uint32_t count = per_core + (idx < big ? 1 : 0);
    for (uint32_t i = begin; i < begin + count; ++i) {
      if (i < items) ++seen[i]; else expect(false, what, i, items);
    }
  }
  for (uint32_t i = 0; i < items; ++i) expect(seen[i] == 1, what, i, seen[i]);
}

void flash_cases() {
  const uint32_t budgets[] = {192 * 1024 - 8 * 1024, 64 * 1024, 16 * 1024};
  const mft::ascend::FlashAttentionProblem problems[] = {
      {1, 1, 1, 1, 8, 0.f}, {2, 8, 2, 1000, 128, 0.f}, {1, 32, 8, 4096, 128, 0.f},
      {3, 4, 4, 77, 64, 0.5f}, {1, 2, 1, 8192, 256, 0.f},
  };
  for (uint32_t ub : budgets)
    for (const auto &p : problems) {
      FlashAttentionTiling t{};
      const std::string err = mft::ascend::flash_attention_tiling(p, ub, 24, &t);
      if (!err.empty()) {
        expect(mft::ascend::flash_attention_ub_bytes(1, 8, p.dim) > ub, "flash tiling refused a problem that fits",
               p.dim, ub);
        continue;
      }
      expect(t.ubBytes <= ub && t.ubBytes == mft::ascend::flash_attention_ub_bytes(t.qTile, t.kvTile, t.dim),
             "flash ub bytes", t.ubBytes, ub);
      expect(t.qTile >= 1 && t.qTile <= t.seq && t.kvTile % 8 == 0, "flash tile sizes", t.qTile, t.kvTile);
      expect(uint64_t(t.qTiles) * t.qTile >= t.seq && uint64_t(t.qTiles - 1) * t.qTile < t.seq, "flash q tiles",
             t.qTiles, t.seq);
      expect(t.tasks == t.batch * t.heads * t.qTiles && t.blockDim >= 1 && t.blockDim <= 24, "flash tasks",
             t.tasks, t.blockDim);
      check_cover(t.tasks, t.blockDim, t.tasksPerCore, t.bigCores, "flash task cover");
      const float want_scale = p.scale > 0 ? p.scale : 1.f / std::sqrt(float(p.dim));
      expect(t.scale == want_scale, "flash scale");
    }
  FlashAttentionTiling t{};
  expect(!mft::ascend::flash_attention_tiling({1, 3, 2, 8, 8, 0.f}, 1 << 17, 8, &t).empty(), "heads % kv_heads");
  expect(!mft::ascend::flash_attention_tiling({1, 2, 2, 8, 12, 0.f}, 1 << 17, 8, &t).empty(), "dim % 8");
  expect(!mft::ascend::flash_attention_tiling({1, 2, 2, 8, 8, 0.f}, 1 << 17, 0, &t).empty(), "zero cores");
  expect(!mft::ascend::flash_attention_tiling({1, 2, 2, 8, 4096, 0.f}, 16 * 1024, 8, &t).empty(), "dim too big");
}

void gating_cases() {
  const mft::ascend::MoeGatingProblem problems[] = {
      {0, 8, 2, false, 1, 1, true, false, 1.f}, {1000, 8, 2, false, 1, 1, true, false, 1.f},
      {4096, 256, 8, true, 8, 4, true, true, 2.5f}, {7, 64, 6, false, 1, 1, false, false, 1.f},
  };
  for (const auto &p : problems) {
    MoeGatingTiling t{};
    const std::string err = mft::ascend::moe_gating_tiling(p, 192 * 1024 - 8 * 1024, 40, &t);
    expect(err.empty(), "gating tiling refused a valid problem", p.tokens, p.experts);
    if (!err.empty()) continue;
    expect(mft::ascend::moe_gating_ub_bytes(t.rowsPerTile, t.experts, t.topK) <= 192 * 1024 - 8 * 1024,
           "gating ub bytes", t.rowsPerTile);
    expect(t.topK == p.top_k && t.sigmoid == p.sigmoid && t.hasBias == p.has_bias, "gating fields");
    check_cover(t.tokens, t.blockDim, t.tokensPerCore, t.bigCores, "gating token cover");
  }
  MoeGatingTiling t{};
  expect(!mft::ascend::moe_gating_tiling({4, 12, 2, false, 1, 1, false, false, 1}, 1 << 17, 8, &t).empty(), "E % 8");
  expect(!mft::ascend::moe_gating_tiling({4, 16, 20, false, 1, 1, false, false, 1}, 1 << 17, 8, &t).empty(), "k > E");
  expect(!mft::ascend::moe_gating_tiling({4, 16, 4, true, 8, 1, false, false, 1}, 1 << 17, 8, &t).empty(),
         "groups hold fewer than k");
  expect(!mft::ascend::moe_gating_tiling({4, 16, 2, true, 3, 1, false, false, 1}, 1 << 17, 8, &t).empty(),
         "E % n_group");
}

}  // namespace

int main() {
  flash_cases();
  gating_cases();
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("ascend tiling: all checks passed\n");
  return 0;
}
