"""Expert parallelism (parallel.ep): each rank of an ep group holds num_experts / ep experts.

Build context. A model built inside `with expert_parallel(ep_group, token_group):`
gets MoE layers (mft.models.common.moe.MoE) that hold only their rank's experts:
rank r of the ep group owns experts [r * E/ep, (r + 1) * E/ep) (the HF indices
`experts.<e>` that `mft.weights.plans` assigns to ep rank r). `token_group` is
the group whose ranks together hold one micro-batch (the dp group): MoE layers
sum their per-expert token counts over it, so the balance loss and the expert
load (and the aux-loss-free bias update) are those of the whole micro-batch,
as in a single-process run.

Dispatch. Routing runs on every rank for its own tokens over all E experts.
The (token, expert) rows then go to the rank owning the expert through an
all-to-all over the ep group and come back through the reverse one:

- sorted (dropless, `model.fused_moe`): rows are sorted by global expert
  (moe_permute); the rows for destination d are a contiguous run. Each
  (source, destination) pair exchanges a fixed buffer of C = T * min(k, E/ep)
  rows: no token sends more than min(k, E/ep) rows to one rank (its k experts
  are distinct), so the buffer always fits and nothing is dropped. The
  per-expert counts travel in a second, tiny all-to-all. The receiver orders
  the rows by (local expert, source rank, position), puts the padding rows
  (zeros) last and gives them to its last expert (zero rows add exactly
  zero to the outputs and to the weight gradients), runs the grouped matmul,
  undoes the order and sends the rows back; the source unsorts and combines
  them with the gate weights (moe_unpermute).
- capacity (`model.capacity_factor`): the (E, cap, hidden) buffer of the
  single-rank path is exchanged as ep blocks of (E/ep, cap) rows; the
  receiver runs its E/ep experts on (E/ep, ep * cap) rows. Dropping is
  decided at the source, per expert over the rank's own tokens, exactly as
  with plain data parallelism.

Why a fixed buffer and not "counts first, then the exact sizes": a compiled
(graph-mode) step has static shapes, the CPU fallback of all-to-all
(mft.parallel.comm: all-gather + select) needs them too, and sizes known
only after a first exchange would need the host in the middle of the step.
The buffer is the worst case, so the exchange is exact and dropless at the
price of padding: ep * C rows reach each rank where about T * k are real;
the grouped-matmul kernel computes the padding rows too (a kernel that
skipped rows past the counts would remove that cost).

The all-to-all is `ExpertAllToAll`: forward all-to-all over the ep group,
backward the same all-to-all of the gradient (the exchange is its own
transpose), written as a bprop so it holds on every backend (MindSpore's own
gradient of the CPU fallback's AllGather would be a ReduceScatter, which the
CPU backend lacks).

Gradients (`grad_reducer`): dense parameters are averaged over dp as today;
an expert's gradient already sums the contributions of every token of its ep
group (they came back through the all-to-all), so expert stacks are summed
over the expert-data-parallel group (`edp`: the ranks holding the same
experts) and divided by dp. `grad_norm` counts dense gradients once and sums
the expert gradients' squares over the ep group (each expert once).

Checkpoints stay full Hugging Face folders: `gather_values` all-gathers the
expert stacks over the ep group before a save, `shard_values` keeps this
rank's experts of full arrays (optimizer moments on resume), and
mft.models.base names stacked experts by their global index, loading only
the owned ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from mft.errors import MftError
from mft.parallel.groups import Group

_CONTEXT = None  # (ep group, token group) while a model is being built


@dataclass(frozen=True)
class ExpertContext:
    group: Group  # the ep group
    token_group: Group | None  # the ranks sharing one micro-batch (dp)


@contextlib.contextmanager
def expert_parallel(group: Group | None, token_group: Group | None = None):
    """MoE layers built inside hold group.rank's share of the experts and sum token counts over token_group."""
    global _CONTEXT
    previous = _CONTEXT
    ep = group if group is not None and group.size > 1 else None
    tokens = token_group if token_group is not None and token_group.size > 1 else None
    _CONTEXT = ExpertContext(ep, tokens) if (ep or tokens) else None
    try:
        yield
    finally:
        _CONTEXT = previous


def current() -> ExpertContext | None:
    return _CONTEXT


def owned_experts(num_experts: int, group: Group | None) -> tuple[int, int]:
    """(first expert index, number of experts) this rank holds."""
    size = group.size if group is not None else 1
    if num_experts % size:
        raise MftError(f"parallel.ep={size} must divide the model's {num_experts} experts (model.num_experts)")
    local = num_experts // size
    return (group.rank if group is not None else 0) * local, local


def send_capacity(tokens: int, top_k: int, local_experts: int) -> int:
    """Rows one rank sends another in the dropless exchange: each token reaches a rank at most min(k, E/ep) times."""
    return tokens * min(top_k, local_experts)


# ----------------------------------------------------------------------------- model-level helpers


def expert_stacks(model) -> dict:
    """id(parameter) -> (cell) for every expert stack built for ep > 1 (GroupedLinear with `ep_group`)."""
    out = {}
    for _, cell in model.cells_and_names():
        group = getattr(cell, "ep_group", None)
        if group is not None and group.size > 1:
            out[id(cell.weight)] = cell
    return out


def ep_group_of(model) -> Group | None:
    for cell in expert_stacks(model).values():
        return cell.ep_group
    return None


def expert_offsets(model) -> dict:
    """id(parameter) -> index of its first expert (only stacks holding a share of the experts)."""
    return {pid: cell.expert_offset for pid, cell in expert_stacks(model).items()}


def expert_param_names(model) -> dict:
    """parameter name -> its GroupedLinear cell, for ep-split stacks."""
    stacks = expert_stacks(model)
    return {p.name: stacks[id(p)] for _, p in model.parameters_and_names() if id(p) in stacks}


def init_shards(model) -> dict:
    """id(parameter) -> (full shape, slice) for model_factory.init_weights: draw all experts, keep ours."""
    out = {}
    for pid, cell in expert_stacks(model).items():
        shape = (cell.global_experts,) + tuple(cell.weight.shape[1:])
        out[pid] = (shape, slice(cell.expert_offset, cell.expert_offset + cell.weight.shape[0]))
    return out


def gather_values(model, values: dict, key_param=None) -> dict:
    """{name: this rank's array} -> expert stacks all-gathered over ep (a collective every ep rank calls)."""
    names = expert_param_names(model)
    if not names:
        return dict(values)
    import mindspore as ms

    from mft.parallel.comm import AllGather

    group = ep_group_of(model)
    gather = AllGather(group, 0)
    out = {}
    for name in sorted(values):
        arr = values[name]
        cell = names.get(key_param(name) if key_param else name)
        if cell is None or np.ndim(arr) == 0:
            out[name] = arr
            continue
        out[name] = gather(ms.Tensor(np.ascontiguousarray(arr, np.float32))).asnumpy().astype(arr.dtype)
    return out


def shard_values(model, values: dict, key_param=None) -> dict:
    """Full arrays -> this rank's experts for ep-split stacks (others unchanged)."""
    names = expert_param_names(model)
    out = {}
    for name, arr in values.items():
        cell = names.get(key_param(name) if key_param else name)
        if cell is None or np.ndim(arr) == 0:
            out[name] = arr
            continue
        if arr.shape[0] != cell.global_experts:
            raise MftError(f"{name}: expected the full stack of {cell.global_experts} experts, got shape {arr.shape}")
        out[name] = np.ascontiguousarray(arr[cell.expert_offset:cell.expert_offset + cell.weight.shape[0]])
    return out


def describe(model) -> str:
    """One log line: which experts this rank holds."""
    stacks = list(expert_stacks(model).values())
    if not stacks:
        return "ep: 1 (every expert on every rank)"
    cell = stacks[0]
    first, count = cell.expert_offset, cell.weight.shape[0]
    return (f"ep: rank {cell.ep_group.rank} holds experts {first}-{first + count - 1} of {cell.global_experts} "
            f"in each of {len(stacks) // 3} MoE layers (ep group {list(cell.ep_group.ranks)})")


def global_numel(model, params, numel: int) -> int:
    """`numel` (this rank's count) with ep-split stacks counted at their full size."""
    stacks = expert_stacks(model)
    for p in params:
        cell = stacks.get(id(p))
        if cell is not None:
            numel += int(np.prod(p.shape)) // p.shape[0] * (cell.global_experts - p.shape[0])
    return numel


# ----------------------------------------------------------------------------- config checks


def check_config(cfg) -> None:
    """What ep > 1 supports in this build (MftError naming the keys)."""
    p = cfg.parallel
    ep = p.ep
    if not isinstance(ep, int) or ep < 1:
        raise MftError(f"parallel.ep must be an integer >= 1, got {ep!r}")
    if ep == 1:
        return
    from mft.training.model_factory import MOE_ARCHS

    m = cfg.model
    if m.arch not in MOE_ARCHS:
        raise MftError(f"parallel.ep={ep}: expert parallelism needs a mixture-of-experts model "
                       f"({', '.join(MOE_ARCHS)}), not model.arch={m.arch}; set parallel.ep=1")
    if p.zero:
        raise MftError(f"parallel.ep={ep} with parallel.zero={p.zero}: ZeRO shards one flat buffer over dp, which "
                       "would mix different experts' gradients; set parallel.zero=0 or parallel.ep=1")
    for key in ("tp", "cp"):
        if getattr(p, key) != 1:
            raise MftError(f"parallel.ep={ep} with parallel.{key}={getattr(p, key)}: expert parallelism is implemented "
                           f"over data-parallel ranks only (parallel.dp); set parallel.{key}=1 or parallel.ep=1")
    if p.dp % ep:
        raise MftError(f"parallel.ep={ep} must divide parallel.dp={p.dp} (experts are spread over the data-parallel "
                       f"ranks of a stage); set parallel.dp to a multiple of {ep}")
    if not m.pretrained and m.num_experts and m.num_experts % ep:
        raise MftError(f"parallel.ep={ep} must divide model.num_experts={m.num_experts}")
    if cfg.finetune.method != "full":
        raise MftError(f"parallel.ep={ep} with finetune.method={cfg.finetune.method}: LoRA is not expert-parallel yet; "
                       "set parallel.ep=1")
    if cfg.train.optimizer.name != "adamw":
        raise MftError(f"parallel.ep={ep} with train.optimizer.name={cfg.train.optimizer.name}: only adamw's update is "
                       "the same on a share of the expert stack as on the whole; use adamw or parallel.ep=1")
    if cfg.monitor.spike.action == "skip" or cfg.monitor.layer_norms:
        raise MftError(f"parallel.ep={ep}: monitor.spike.action=skip and monitor.layer_norms need per-tensor norms over "
                       "the ep group, which are not implemented; use another spike action / layer_norms=false, or parallel.ep=1")
    if cfg.monitor.histograms_every:
        raise MftError(f"parallel.ep={ep}: monitor.histograms_every would show this rank's experts only; set it to 0 or parallel.ep=1")


# ----------------------------------------------------------------------------- cells (MindSpore)


def _cells():
    import mindspore as ms
    from mindspore import nn, ops

    from mft.parallel.comm import AllReduce, AllToAll

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

    class ExpertGradReducer(nn.Cell):
        """Dense grads: one flat all-reduce mean over dp; expert stacks: one flat sum over edp, divided by dp."""

        def __init__(self, dp: Group, edp: Group, params, is_expert: tuple):
            super().__init__(auto_prefix=False)
            self.is_expert = is_expert
            self.shapes = tuple(tuple(p.shape) for p in params)
            self.dtypes = tuple(p.dtype for p in params)
            self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
            self.dp_mean = AllReduce(dp, "mean")
            self.edp_sum = AllReduce(edp, "sum")
            self.dp_scale = 1.0 / dp.size
            self.dense_count = sum(1 for x in is_expert if not x)
            self.expert_count = sum(1 for x in is_expert if x)

        def _flat(self, grads, expert: bool):
            return ops.concat([grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if self.is_expert[i] == expert])

        def construct(self, grads):
            dense = self.dp_mean(self._flat(grads, False)) if self.dense_count else None
            experts = self.edp_sum(self._flat(grads, True)) * self.dp_scale if self.expert_count else None
            out = ()
            od = 0
            oe = 0
            for i in range(len(grads)):
                n = self.sizes[i]
                if self.is_expert[i]:
                    piece = experts[oe:oe + n]
                    oe += n
                else:
                    piece = dense[od:od + n]
                    od += n
                out = out + (piece.reshape(self.shapes[i]).astype(self.dtypes[i]),)
            return out

    class ExpertGradNorm(nn.Cell):
        """Global L2 norm: dense grads (the same on every rank) once, expert grads' squares summed over ep."""

        def __init__(self, ep: Group, is_expert: tuple):
            super().__init__(auto_prefix=False)
            self.is_expert = is_expert
            self.ep_sum = AllReduce(ep, "sum")
            self.any_dense = not all(is_expert)

        def construct(self, grads):
            parts = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if self.is_expert[i]]
            total = self.ep_sum(ops.square(ops.concat(parts)).sum().reshape(1)).reshape(())
            if self.any_dense:
                dense = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if not self.is_expert[i]]
                total = total + ops.square(ops.concat(dense)).sum()
            return ops.sqrt(total)

    return ExpertAllToAll, SortedExpertDispatch, CapacityExpertDispatch, ExpertGradReducer, ExpertGradNorm


def sorted_dispatch(group: Group, num_experts: int, top_k: int):
    return _cells()[1](group, num_experts, top_k)


def capacity_dispatch(group: Group, num_experts: int):
    return _cells()[2](group, num_experts)


def grad_reducer(model, params, dp: Group, edp: Group):
    """The train step's grad_reducer when the model has ep-split expert stacks, else None (use dp's)."""
    stacks = expert_stacks(model)
    if not stacks:
        return None
    is_expert = tuple(id(p) in stacks for p in params)
    if dp.size == 1 and edp.size == 1:
        return None
    return _cells()[3](dp, edp, params, is_expert)


def grad_norm(model, params):
    """A Cell for the global grad norm with ep-split stacks (None when there are none)."""
    stacks = expert_stacks(model)
    if not stacks or not any(id(p) in stacks for p in params):
        return None
    return _cells()[4](ep_group_of(model), tuple(id(p) in stacks for p in params))
