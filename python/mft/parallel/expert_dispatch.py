"""Expert-parallel token dispatch (parallel.ep): the routed rows to the ranks owning their experts and back.

The cells `mft.models.common.moe.MoE` builds under ep > 1 (see mft.parallel.expert_parallel's docstring for the
exchange: the fixed send buffer of the dropless sorted path, the capacity path's (E, cap) blocks, and why the
all-to-all carries its own bprop):

- `ExpertAllToAll`: block i of dim 0 to ep rank i, its own transpose as the backward;
- `SortedExpertDispatch`: dropless rows sorted by expert (model.fused_moe) -> this rank's experts' rows grouped
  for the grouped matmul, and back (`dispatch` / `combine`; the phases are methods so tests can run them
  rank by rank with a simulated all-to-all);
- `CapacityExpertDispatch`: the (E, cap, hidden) buffers of the capacity path -> (E/ep, ep * cap, hidden), and back.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from mft.parallel.comm import AllToAll
from mft.parallel.expert_parallel import send_capacity
from mft.parallel.groups import Group


class ExpertAllToAll(nn.Cell):
    """Block i of dim 0 goes to ep rank i; received blocks concatenated in source order. Its own transpose."""

    def __init__(self, group: Group):
        super().__init__()
        self.a2a = AllToAll(group, 0, 0)

    def construct(self, x):
        return self.a2a(x)

    def bprop(self, x, out, dout):
        return (self.a2a(dout),)

class SortedExpertDispatch(nn.Cell):
    """Dropless sorted dispatch over the ep group; see the module docstring. Phases are methods so tests can
    run them rank by rank with a simulated all-to-all."""

    def __init__(self, group: Group, num_experts: int, top_k: int):
        super().__init__()
        self.ep = group.size
        self.local = num_experts // group.size
        self.top_k = top_k
        self.exchange = ExpertAllToAll(group)
        self.count_exchange = AllToAll(group, 0, 0)

    def send(self, rows, counts):
        """rows (N, h) sorted by global expert, counts (E,) -> (send (ep*C, h), send counts (ep, E/ep), dest_start, dest_len)."""
        n = rows.shape[0]
        ep, cap = self.ep, send_capacity(n // self.top_k, self.top_k, self.local)
        cnt = counts.astype(ms.int32).reshape(ep, self.local)
        dest_len = cnt.sum(1)
        dest_start = ops.cumsum(dest_len, 0) - dest_len
        i = ops.arange(0, cap, dtype=ms.int32).reshape(1, cap)
        idx = dest_start.reshape(ep, 1) + i
        valid = (i < dest_len.reshape(ep, 1)).astype(rows.dtype).reshape(ep * cap, 1)
        idx = ops.minimum(idx, n - 1).reshape(-1)
        return ops.gather(rows, idx, 0) * valid, cnt, dest_start, dest_len

    def order(self, recv_counts, cap: int):
        """recv_counts (ep, E/ep) int32 -> (gather order grouping rows by (local expert, source, position),
        grouped-matmul counts with the padding given to the last expert)."""
        ep, local = self.ep, self.local
        ends = ops.cumsum(recv_counts, 1)  # (ep, local)
        i = ops.arange(0, cap, dtype=ms.int32)
        expert = (i.reshape(1, cap, 1) >= ends.reshape(ep, 1, local)).astype(ms.int32).sum(-1)  # (ep, cap); local = padding
        source = ops.arange(0, ep, dtype=ms.int32).reshape(ep, 1)
        key = expert * (ep * cap) + source * cap + i.reshape(1, cap)
        _, order = ops.sort(key.reshape(-1))  # int32 keys, all distinct: exact below 2**31
        total = recv_counts.sum(0)  # (local,)
        pad = ep * cap - total.sum()
        last = ops.one_hot(ops.full((1,), local - 1, dtype=ms.int32), local, ms.Tensor(1, ms.int32), ms.Tensor(0, ms.int32))
        return order.astype(ms.int32), total + last.reshape(local) * pad

    def regroup(self, recv, order):
        return ops.gather(recv, order, 0)

    def ungroup(self, out, order):
        _, inverse = ops.sort(order)
        return ops.gather(out, inverse.astype(ms.int32), 0)

    def receive(self, back, dest_start, dest_len, n: int):
        """back (ep*C, h) in send layout -> (N, h) in the sorted-by-expert order."""
        ep, cap = self.ep, send_capacity(n // self.top_k, self.top_k, self.local)
        r = ops.arange(0, n, dtype=ms.int32)
        ends = ops.cumsum(dest_len, 0)
        dest = (r.reshape(n, 1) >= ends.reshape(1, ep)).astype(ms.int32).sum(1)
        pos = r - ops.gather(dest_start, dest, 0)
        return ops.gather(back, dest * cap + pos, 0)

    def dispatch(self, rows, counts):
        """Source rows -> (this rank's rows grouped by local expert, their grouped-matmul counts, what
        `combine` needs)."""
        cap = send_capacity(rows.shape[0] // self.top_k, self.top_k, self.local)
        send, cnt, dest_start, dest_len = self.send(rows, counts)
        recv = self.exchange(send)
        recv_counts = self.count_exchange(ops.stop_gradient(cnt.astype(ms.float32))).astype(ms.int32)
        order, local_counts = self.order(recv_counts, cap)
        return self.regroup(recv, order), local_counts, order, dest_start, dest_len

    def combine(self, out, order, dest_start, dest_len, n: int):
        """The local experts' output rows -> the source's (N, h) rows in sorted-by-expert order."""
        back = self.exchange(self.ungroup(out, order))
        return self.receive(back, dest_start, dest_len, n)

class CapacityExpertDispatch(nn.Cell):
    """(E, cap, h) per-expert buffers -> this rank's experts on every source's share -> back (E, cap, h)."""

    def __init__(self, group: Group, num_experts: int):
        super().__init__()
        self.ep = group.size
        self.local = num_experts // group.size
        self.exchange = ExpertAllToAll(group)

    def dispatch(self, expert_in):
        """(E, cap, h) buffers -> (E/ep, ep * cap, h): this rank's experts' rows from every source."""
        e, cap, h = expert_in.shape
        recv = self.exchange(expert_in.reshape(e * cap, h)).reshape(self.ep, self.local, cap, h)
        return recv.transpose(1, 0, 2, 3).reshape(self.local, self.ep * cap, h)

    def combine(self, out, cap: int):
        """(E/ep, ep * cap, h) outputs -> (E, cap, h) back at their sources."""
        h = out.shape[-1]
        out = out.reshape(self.local, self.ep, cap, h).transpose(1, 0, 2, 3).reshape(self.ep * self.local * cap, h)
        return self.exchange(out).reshape(self.ep * self.local, cap, h)
