#include "kernels/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/parallel.h"

namespace mft::kernels {
namespace {

// Added to the sum of selected weights before dividing, as the composed
// router does (keeps an all-zero sigmoid selection finite).
constexpr float kNormEps = 1e-20f;

void scores_of(const float *logits, int64_t e, bool sigmoid, float *s) {
  if (sigmoid) {
    for (int64_t i = 0; i < e; ++i) s[i] = 1.f / (1.f + std::exp(-logits[i]));
    return;
  }
  float m = logits[0];
  for (int64_t i = 1; i < e; ++i) m = std::max(m, logits[i]);
  float sum = 0.f;
  for (int64_t i = 0; i < e; ++i) {
    s[i] = std::exp(logits[i] - m);
    sum += s[i];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < e; ++i) s[i] *= inv;
}

// Indices of the `k` largest of v[0..n), descending, ties to the lower index.
void top_indices(const float *v, int64_t n, int64_t k, int32_t *idx_buf, int32_t *out) {
  std::iota(idx_buf, idx_buf + n, 0);
  std::partial_sort(idx_buf, idx_buf + k, idx_buf + n, [v](int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  std::copy(idx_buf, idx_buf + k, out);
}

// Selection for one token: fills ids (k) and returns scores in s (E).
void select_one(const float *logits, const float *bias, int64_t e, int64_t k, const GatingConfig &cfg,
                float *s, float *choice, int32_t *idx_buf, float *group_score, int32_t *ids) {
  scores_of(logits, e, cfg.sigmoid, s);
  for (int64_t i = 0; i < e; ++i) choice[i] = bias != nullptr ? s[i] + bias[i] : s[i];
  if (cfg.n_group > 1) {
    const int64_t g = cfg.n_group, size = e / g;
    for (int64_t gi = 0; gi < g; ++gi) {
      const float *c = choice + gi * size;
      if (cfg.sigmoid) {  // sum of the group's two best (DeepSeek-V3)
        float a = -INFINITY, b = -INFINITY;
        for (int64_t i = 0; i < size; ++i) {
          if (c[i] > a) { b = a; a = c[i]; } else if (c[i] > b) { b = c[i]; }
        }
        group_score[gi] = size > 1 ? a + b : a;
      } else {  // best expert of the group (DeepSeek-V2)
        group_score[gi] = *std::max_element(c, c + size);
      }
    }
    std::vector<int32_t> keep(static_cast<size_t>(cfg.topk_group));
    top_indices(group_score, g, cfg.topk_group, idx_buf, keep.data());
    std::vector<char> kept(static_cast<size_t>(g), 0);
    for (int32_t gi : keep) kept[gi] = 1;
    // Experts of dropped groups get choice 0.0, as the composed router (and HF) mask them.
    for (int64_t gi = 0; gi < g; ++gi) {
      if (!kept[gi]) std::fill(choice + gi * size, choice + (gi + 1) * size, 0.f);
    }
  }
  top_indices(choice, e, k, idx_buf, ids);
}

}  // namespace

std::string check_gating_args(int64_t tokens, int64_t experts, int64_t k, const GatingConfig &cfg) {
  if (tokens < 0 || experts <= 0) return "logits must be (tokens, experts) with experts > 0";
  if (k <= 0 || k > experts) return "top_k must be in [1, experts]";
  if (cfg.n_group <= 0 || experts % cfg.n_group != 0) return "experts must be a multiple of n_group";
  if (cfg.topk_group <= 0 || cfg.topk_group > cfg.n_group) return "topk_group must be in [1, n_group]";
  if (cfg.n_group > 1 && cfg.topk_group * (experts / cfg.n_group) < k)
    return "topk_group groups hold fewer than top_k experts";
  return "";
}

void moe_gating_forward(const float *logits, const float *bias, float *weights, int32_t *ids,
                        int64_t tokens, int64_t experts, int64_t k, const GatingConfig &cfg) {
  const int threads = plan_threads(tokens, experts * 8);
  parallel_rows(tokens, threads, [&](int64_t begin, int64_t end, int) {
    std::vector<float> s(experts), choice(experts), group_score(cfg.n_group);
    std::vector<int32_t> idx(std::max(experts, cfg.n_group));
    for (int64_t t = begin; t < end; ++t) {
      int32_t *id = ids + t * k;
      float *w = weights + t * k;
      select_one(logits + t * experts, bias, experts, k, cfg, s.data(), choice.data(), idx.data(),
                 group_score.data(), id);
      float sum = 0.f;
      for (int64_t j = 0; j < k; ++j) {
        w[j] = s[id[j]];
        sum += w[j];
      }
      const float mul = cfg.norm_topk_prob ? cfg.routed_scaling_factor / (sum + kNormEps)
                                           : cfg.routed_scaling_factor;
      for (int64_t j = 0; j < k; ++j) w[j] *= mul;
    }
  });
}

void moe_gating_backward(const float *dweights, const float *logits, const int32_t *ids,
                         float *dlogits, int64_t tokens, int64_t experts, int64_t k,
                         const GatingConfig &cfg) {
  const int threads = plan_threads(tokens, experts * 4);
  parallel_rows(tokens, threads, [&](int64_t begin, int64_t end, int) {
    std::vector<float> s(experts), ds(experts), dr(k);
    for (int64_t t = begin; t < end; ++t) {
      const int32_t *id = ids + t * k;
      const float *dw = dweights + t * k;
      scores_of(logits + t * experts, experts, cfg.sigmoid, s.data());
      // w_j = c * r_j / (sum r + eps) (or c * r_j): gradient w.r.t. the selected scores r.
      const float c = cfg.routed_scaling_factor;
      if (cfg.norm_topk_prob) {
        float sum = 0.f, dot = 0.f;
        for (int64_t j = 0; j < k; ++j) {
          sum += s[id[j]];
          dot += dw[j] * s[id[j]];
        }
        const float S = sum + kNormEps;
        for (int64_t j = 0; j < k; ++j) dr[j] = c * (dw[j] / S - dot / (S * S));
      } else {
        for (int64_t j = 0; j < k; ++j) dr[j] = c * dw[j];
      }
      std::fill(ds.begin(), ds.end(), 0.f);
      for (int64_t j = 0; j < k; ++j) ds[id[j]] += dr[j];
      float *dl = dlogits + t * experts;
      if (cfg.sigmoid) {
        for (int64_t i = 0; i < experts; ++i) dl[i] = ds[i] * s[i] * (1.f - s[i]);
      } else {
        float dot = 0.f;
        for (int64_t j = 0; j < k; ++j) dot += ds[id[j]] * s[id[j]];
        for (int64_t i = 0; i < experts; ++i) dl[i] = s[i] * (ds[i] - dot);
      }
    }
  });
}

bool ids_in_range(const int32_t *ids, int64_t n, int64_t experts) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= experts) return false;
  }
  return true;
}

void moe_permute(const float *x, const int32_t *ids, float *x_sorted, int32_t *row_map,
                 int32_t *counts, int64_t tokens, int64_t hidden, int64_t k, int64_t experts) {
  const int64_t n = tokens * k;
  // Counting sort by expert: stable, so rows keep (token, slot) order inside an expert.
  std::fill(counts, counts + experts, 0);
  for (int64_t i = 0; i < n; ++i) ++counts[ids[i]];
  std::vector<int64_t> next(experts, 0);
  for (int64_t e = 1; e < experts; ++e) next[e] = next[e - 1] + counts[e - 1];
  for (int64_t i = 0; i < n; ++i) row_map[next[ids[i]]++] = static_cast<int32_t>(i);
  parallel_rows(n, plan_threads(n, hidden), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(x_sorted + r * hidden, x + (row_map[r] / k) * hidden, sizeof(float) * hidden);
    }
  });
}

bool invert_row_map(const int32_t *row_map, int64_t n, int32_t *inv) {
  std::fill(inv, inv + n, -1);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t src = row_map[r];
    if (src < 0 || src >= n || inv[src] != -1) return false;
    inv[src] = static_cast<int32_t>(r);
  }
  return true;
}

void moe_unpermute(const float *y_sorted, const int32_t *inv, const float *weights, float *out,
                   int64_t tokens, int64_t hidden, int64_t k) {
  parallel_rows(tokens, plan_threads(tokens, hidden * k), [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      float *o = out + t * hidden;
      std::fill(o, o + hidden, 0.f);
      for (int64_t j = 0; j < k; ++j) {
        const float w = weights != nullptr ? weights[t * k + j] : 1.f;
        const float *y = y_sorted + static_cast<int64_t>(inv[t * k + j]) * hidden;
        for (int64_t i = 0; i < hidden; ++i) o[i] += w * y[i];
      }
    }
  });
}

void moe_unpermute_backward(const float *dout, const float *y_sorted, const int32_t *row_map,
                            const float *weights, float *dy_sorted, float *dweights,
                            int64_t tokens, int64_t hidden, int64_t k) {
  const int64_t n = tokens * k;
  parallel_rows(n, plan_threads(n, hidden * 2), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t src = row_map[r];
      const float *g = dout + (src / k) * hidden;
      const float *y = y_sorted + r * hidden;
      float *dy = dy_sorted + r * hidden;
      const float w = weights[src];
      float dot = 0.f;
      for (int64_t i = 0; i < hidden; ++i) {
        dy[i] = w * g[i];
        dot += y[i] * g[i];
      }
      dweights[src] = dot;
    }
  });
}

}  // namespace mft::kernels
