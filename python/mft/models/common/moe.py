"""Sparse mixture-of-experts feed-forward: router, experts, static-shape dispatch, aux losses.

Routers (one `TopKRouter` cell, named `gate` like HF):
- "softmax": probs = softmax(logits); top-k of probs; optionally renormalised
  (Mixtral always, Qwen3-MoE with norm_topk_prob).
- "sigmoid" (DeepSeek-V3): scores = sigmoid(logits); experts are chosen on
  scores + e_score_correction_bias within the best `topk_group` of `n_group`
  groups (a group's score is the sum of its two best experts); the weights
  are the unbiased scores of the chosen experts, optionally renormalised,
  times routed_scaling_factor.

Dispatch has shapes that never depend on routing (graph-mode friendly), in
one of two ways:
- capacity (default): each expert takes the first C tokens routed to it, in
  token order (C = capacity); the rest are dropped. C = all tokens is dropless
  and exact, but then every expert runs on every token. Tokens are gathered
  into (E, C, hidden), run through the stacked expert weights with batched
  matmuls, weighted and summed back with a segment sum.
- sorted (fused=True, dropless): the T*k (token, expert) rows are permuted so
  each expert's rows are contiguous (mft.ops.moe_permute), each expert's block
  goes through its own weights with the grouped-matmul kernel
  (mft.ops.grouped_matmul), and the rows are weighted and summed back per
  token (moe_unpermute). The work is T*k rows, not T*E: the layer computes
  only what it routes. The C++ kernels run fp32 on the CPU target.

Auxiliary losses, unweighted (the model multiplies by the recipe's coefficients):
- load balance  sum_e f_e * P_e, f_e = E/(k*T) * tokens routed to e, P_e = mean
  routing probability of e (sigmoid scores normalised per token), over the
  whole micro-batch ("global") or per sequence then averaged ("sequence");
  equals 1 when perfectly balanced;
- router z-loss  mean_t logsumexp(logits_t)^2.
The per-expert load (tokens routed, before dropping) is returned so the train
step can update e_score_correction_bias (auxiliary-loss-free balancing) and
report it.

Expert parallelism (parallel.ep, mft.parallel.expert_parallel): built inside
`expert_parallel(ep_group, token_group)` the layer holds only its rank's
E/ep experts (`experts.*.expert_offset` = the first one's global index) and
exchanges the routed rows with the other ep ranks by all-to-all (both
dispatch ways). The token counts behind the balance loss and the load are
summed over token_group (the data-parallel ranks sharing the micro-batch),
so they are those of the whole micro-batch; the probabilities P_e stay the
rank's own mean, and the dp mean of the per-rank losses is the
single-process balance loss.
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import Parameter, mint, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from mft.ops.grouped_matmul import grouped_matmul
from mft.ops.moe_routing import keep_best_groups, moe_permute, moe_unpermute
from mft.parallel import expert_parallel as ep_parallel
from mft.parallel.comm import AllReduce
from mft.parallel.layers import GroupedLinear

AUX_LOSS_TYPES = ("global", "sequence", "none")


class TopKRouter(nn.Cell):
    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        scoring: str = "softmax",
        norm_topk_prob: bool = True,
        n_group: int = 1,
        topk_group: int = 1,
        routed_scaling_factor: float = 1.0,
        correction_bias: bool = False,
        init_std: float = 0.02,
        dtype=ms.float32,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.scoring = scoring
        self.norm_topk_prob = norm_topk_prob
        self.n_group = n_group
        self.topk_group = topk_group
        self.routed_scaling_factor = float(routed_scaling_factor)
        self.weight = Parameter(initializer(Normal(sigma=init_std), (num_experts, hidden_size), dtype), name="weight")
        self.has_bias = correction_bias
        if correction_bias:
            # Not trained by gradients: moved by the train step from the expert load.
            self.e_score_correction_bias = Parameter(initializer(Zero(), (num_experts,), ms.float32), name="e_score_correction_bias", requires_grad=False)

    def construct(self, x):
        """x (T, hidden) -> logits (T, E) fp32, probs (T, E) for balancing, top-k ids (T, k), weights (T, k)."""
        logits = mint.nn.functional.linear(x.astype(ms.float32), self.weight.astype(ms.float32))
        if self.scoring == "softmax":
            probs = mint.nn.functional.softmax(logits, dim=-1)
            weights, ids = ops.topk(probs, self.top_k)
            if self.norm_topk_prob:
                weights = weights / weights.sum(-1, keepdims=True)
            return logits, probs, ids, weights
        scores = ops.sigmoid(logits)
        choice = scores + self.e_score_correction_bias if self.has_bias else scores
        if self.n_group > 1:  # exactly topk_group groups, ties to the lower index (one rule with the fused kernel)
            choice = keep_best_groups(choice, self.n_group, self.topk_group, "sigmoid")
        ids = ops.topk(choice, self.top_k)[1]
        weights = ops.gather_elements(scores, 1, ids)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
        weights = weights * self.routed_scaling_factor
        return logits, scores / scores.sum(-1, keepdims=True), ids, weights


class Experts(nn.Cell):
    """E SwiGLU experts with stacked weights: down(silu(gate(x)) * up(x)) per expert."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        self.gate_proj = GroupedLinear(num_experts, hidden_size, intermediate_size, init_std, dtype)
        self.up_proj = GroupedLinear(num_experts, hidden_size, intermediate_size, init_std, dtype)
        self.down_proj = GroupedLinear(num_experts, intermediate_size, hidden_size, init_std, dtype)

    def construct(self, x):
        return self.down_proj(mint.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def capacity(tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Tokens each expert takes; capacity_factor <= 0 means dropless (every token fits)."""
    if capacity_factor <= 0:
        return tokens
    return max(1, min(tokens, math.ceil(capacity_factor * tokens * top_k / num_experts)))


class MoE(nn.Cell):
    """Routed experts (+ optional always-on shared experts), as one feed-forward block.

    construct(x (B, S, hidden)) -> (out, balance loss, z-loss, load (E,)).
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        router: TopKRouter,
        shared_experts: nn.Cell | None = None,
        capacity_factor: float = 0.0,
        aux_loss_type: str = "global",
        init_std: float = 0.02,
        dtype=ms.float32,
        fused: bool = False,
    ):
        super().__init__()
        self.fused = bool(fused)  # sorted dropless dispatch on the C++ kernels
        self.num_experts = router.num_experts
        self.top_k = router.top_k
        self.capacity_factor = float(capacity_factor)
        self.aux_loss_type = aux_loss_type
        self.gate = router
        ctx = ep_parallel.current()
        ep_group = ctx.group if ctx is not None else None
        self.ep = ep_group.size if ep_group is not None else 1
        self.expert_offset, self.local_experts = ep_parallel.owned_experts(self.num_experts, ep_group)
        self.experts = Experts(self.local_experts, hidden_size, intermediate_size, init_std, dtype)
        if self.ep > 1:
            for lin in (self.experts.gate_proj, self.experts.up_proj, self.experts.down_proj):
                lin.ep_group, lin.expert_offset, lin.global_experts = ep_group, self.expert_offset, self.num_experts
            self.ep_dispatch = (ep_parallel.sorted_dispatch(ep_group, self.num_experts, self.top_k) if self.fused
                                else ep_parallel.capacity_dispatch(ep_group, self.num_experts))
        token_group = ctx.token_group if ctx is not None else None
        self.token_ranks = token_group.size if token_group is not None else 1
        self.count_sum = AllReduce(token_group, "sum") if token_group is not None else None
        self.has_shared = shared_experts is not None
        if self.has_shared:
            self.shared_experts = shared_experts

    def construct(self, x):
        b, s, h = x.shape
        t = b * s
        e = self.num_experts
        flat = x.reshape(t, h)
        logits, probs, ids, weights = self.gate(flat)
        chosen = ops.one_hot(ids, e, ms.Tensor(1.0, ms.float32), ms.Tensor(0.0, ms.float32))  # (T, k, E)
        selected = chosen.sum(1)  # (T, E) 0/1
        if self.fused:
            out = self._sorted_dispatch(flat, ids, weights).astype(x.dtype)
        else:
            out = self._capacity_dispatch(flat, selected, chosen, weights, t).astype(x.dtype)
        if self.has_shared:
            out = out + self.shared_experts(flat)
        load = selected.sum(0)
        if self.token_ranks > 1:  # the whole micro-batch's counts (no gradient flows through counts)
            load = self.count_sum(ops.stop_gradient(load))
        balance = self._balance_loss(selected, load, probs, b, s)
        z_loss = ops.square(ops.logsumexp(logits, -1)).mean()
        return out.reshape(b, s, h), balance, z_loss, load

    def _sorted_dispatch(self, flat, ids, weights):
        """Each expert on exactly its routed rows: permute, grouped matmuls, weighted unpermute."""
        rows, row_map, counts = moe_permute(flat.astype(ms.float32), ids.astype(ms.int32), self.num_experts)
        if self.ep > 1:  # to the ranks owning the experts and back (mft.parallel.expert_parallel)
            n = rows.shape[0]
            local, local_counts, order, dest_start, dest_len = self.ep_dispatch.dispatch(rows, counts)
            out = self._grouped_experts(local, local_counts)
            out = self.ep_dispatch.combine(out, order, dest_start, dest_len, n)
        else:
            out = self._grouped_experts(rows, counts)
        return moe_unpermute(out, row_map, weights.astype(ms.float32))

    def _grouped_experts(self, rows, counts):
        ex = self.experts  # dense_weight / grouped_input: the stack as is, or dequantized (mft.quant.grouped)
        x = ex.gate_proj.grouped_input(rows)
        hidden = mint.nn.functional.silu(grouped_matmul(x, ex.gate_proj.dense_weight(), counts)) * grouped_matmul(
            x, ex.up_proj.dense_weight(), counts)
        return grouped_matmul(ex.down_proj.grouped_input(hidden), ex.down_proj.dense_weight(), counts)

    def _capacity_dispatch(self, flat, selected, chosen, weights, t: int):
        """Every expert on its first `cap` routed tokens (all tokens when dropless)."""
        e, h = self.num_experts, flat.shape[-1]
        combine = (chosen * weights.astype(ms.float32).expand_dims(-1)).sum(1)  # (T, E) routing weight
        cap = capacity(t, e, self.top_k, self.capacity_factor)
        # Each expert's queue in token order; keep its first `cap` tokens.
        position = ops.cumsum(selected, 0) * selected
        kept = selected * (position <= cap).astype(ms.float32)
        order = ops.arange(t, 0, -1, dtype=ms.int32).astype(ms.float32).reshape(t, 1)  # earlier tokens rank higher
        rank, token_ids = ops.topk((kept * order).swapaxes(0, 1), cap)  # (E, cap)
        valid = (rank > 0).astype(ms.float32)
        expert_in = ops.gather(flat, token_ids.reshape(-1), 0).reshape(e, cap, h)
        if self.ep > 1:  # this rank's experts on every ep rank's share (mft.parallel.expert_parallel)
            expert_out = self.ep_dispatch.combine(self.experts(self.ep_dispatch.dispatch(expert_in)), cap)
        else:
            expert_out = self.experts(expert_in)
        gate_w = ops.gather_elements(combine.swapaxes(0, 1), 1, token_ids) * valid  # (E, cap)
        weighted = (expert_out * gate_w.astype(expert_out.dtype).expand_dims(-1)).reshape(e * cap, h)
        return ops.unsorted_segment_sum(weighted, token_ids.reshape(-1), t)

    def _balance_loss(self, selected, counts, probs, b: int, s: int):
        """counts: tokens per expert over the whole micro-batch (every token rank's b * s tokens)."""
        e, k = self.num_experts, self.top_k
        if self.aux_loss_type == "sequence":
            f = selected.reshape(b, s, e).sum(1) * (e / (k * s))
            p = probs.reshape(b, s, e).mean(1)
            return (f * p).sum(-1).mean()
        if self.aux_loss_type == "global":
            f = counts * (e / (k * b * s * self.token_ranks))
            return (f * probs.mean(0)).sum()
        return ops.zeros((), ms.float32)
