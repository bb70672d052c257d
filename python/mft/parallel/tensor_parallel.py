"""Tensor parallelism (Megatron-style): which group a model is built for, how its weights are cut.

A model is built for a tensor-parallel group by constructing it inside
`with tensor_parallel(group):`; the parallel layers (`layers.py`) read the
group at construction and hold only their rank's piece:

- column-parallel linears: out_features / tp rows of the (out, in) weight;
- row-parallel linears: in_features / tp columns, output all-reduced;
- vocab-parallel embedding / LM head: ceil(vocab / tp) rows, the last rank's
  padded with zero rows when tp does not divide the vocabulary.

With `sequence_parallel=True` the activations between those layers (norms,
residual adds) stay split along the sequence: entering a tp region
all-gathers the sequence, leaving it reduce-scatters (`enter_region`,
`exit_region`).

Every sharded parameter is described by a `Shard(axis, full)`: the global
tensor is padded to tp * ceil(full / tp) along `axis`, and rank r holds the
r-th chunk. Checkpoints stay in the full (unsharded) Hugging Face layout:
`gather_full` collects the pieces on save (a collective over the tp group),
`shard_array` / `shard_hf_tensors` slice them on load, so a run saved at one
tp resumes at any other and `mft generate` loads it unchanged.

The cells at the end make the train step exact under tp: `TPGradReducer`
sums over tp the gradients that every rank holds only partially (replicated
parameters applied to a rank's own heads: Qwen3's q/k norms; under sequence
parallelism every norm and row-parallel bias) before the
data-parallel mean, and `TPGradNorm` computes the global gradient norm with
every sharded gradient counted once per piece and every replicated one once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from mft.errors import MftError
from mft.parallel.groups import Group

SINGLE = Group("tp", (0,), 0, None)
_CURRENT: Group | None = None
_SEQUENCE_PARALLEL = False


@contextlib.contextmanager
def tensor_parallel(group: Group | None, sequence_parallel: bool = False):
    """Layers constructed inside the block are sharded over `group` (None or size 1: plain dense layers).

    `sequence_parallel`: between the tensor-parallel regions (norms, residual adds) activations are
    split along the sequence (dim 1) over the group instead of replicated.
    """
    global _CURRENT, _SEQUENCE_PARALLEL
    previous = _CURRENT, _SEQUENCE_PARALLEL
    _CURRENT = group if group is not None and group.size > 1 else None
    _SEQUENCE_PARALLEL = bool(sequence_parallel) and _CURRENT is not None
    try:
        yield
    finally:
        _CURRENT, _SEQUENCE_PARALLEL = previous


def current_group() -> Group:
    """The tensor-parallel group layers are being built for (a size-1 group outside `tensor_parallel`)."""
    return _CURRENT or SINGLE


def sequence_parallel() -> bool:
    return _SEQUENCE_PARALLEL


def enter_region(group: Group):
    """Into a tensor-parallel region: CopyToRegion (identity / all-reduce of the gradient), or with
    sequence parallelism GatherFromSequenceRegion (all-gather along the sequence / reduce-scatter)."""
    from mft.parallel import mappings

    if _SEQUENCE_PARALLEL:
        return mappings.GatherFromSequenceRegion(group, 1)
    return mappings.CopyToRegion(group)


def exit_region(group: Group):
    """Out of a tensor-parallel region (partial sums): ReduceFromRegion (all-reduce / identity), or with
    sequence parallelism ReduceScatterToRegion (reduce-scatter along the sequence / all-gather)."""
    from mft.parallel import mappings

    if _SEQUENCE_PARALLEL:
        return mappings.ReduceScatterToRegion(group, 1)
    return mappings.ReduceFromRegion(group)


@dataclass(frozen=True)
class Shard:
    """A parameter cut along `axis`: the global size there is `full`, each of `size` ranks holds `local`."""

    axis: int
    full: int
    size: int

    @property
    def local(self) -> int:
        return -(-self.full // self.size)

    @property
    def padded(self) -> int:
        return self.local * self.size


def divide(full: int, size: int, what: str) -> int:
    """full / size, or an MftError naming the key (`what`) when it does not divide."""
    if full % size:
        raise MftError(f"parallel.tp={size} must divide {what}={full}")
    return full // size


def shard_array(arr: np.ndarray, shard: Shard, rank: int) -> np.ndarray:
    """Rank `rank`'s piece of the global array (zero rows where the axis is padded)."""
    arr = np.asarray(arr)
    if arr.shape[shard.axis] != shard.full:
        raise MftError(f"expected {shard.full} along axis {shard.axis}, got shape {arr.shape}")
    start = rank * shard.local
    stop = min(start + shard.local, shard.full)
    piece = np.take(arr, np.arange(start, stop), axis=shard.axis)
    missing = shard.local - piece.shape[shard.axis]
    if missing:
        pad = [(0, 0)] * arr.ndim
        pad[shard.axis] = (0, missing)
        piece = np.pad(piece, pad)
    return np.ascontiguousarray(piece)


def unshard_arrays(pieces: list, shard: Shard) -> np.ndarray:
    """The global array from every rank's piece, in rank order (padding dropped)."""
    whole = np.concatenate([np.asarray(p) for p in pieces], axis=shard.axis)
    return np.ascontiguousarray(np.take(whole, np.arange(shard.full), axis=shard.axis))


# ----------------------------------------------------------------------------- a model's shards


def model_shards(model) -> dict[int, Shard]:
    """id(parameter) -> Shard for every sharded parameter of `model` (empty at tp=1)."""
    out = {}
    for _, cell in model.cells_and_names():
        for attr, shard in getattr(cell, "tp_shards", {}).items():
            p = getattr(cell, attr, None)
            if p is not None and shard.size > 1:
                out[id(p)] = shard
    return out


def shards_by_name(model) -> dict[str, Shard]:
    """parameter name -> Shard (the names optimizer state is keyed by)."""
    by_id = model_shards(model)
    return {p.name: by_id[id(p)] for _, p in model.parameters_and_names() if id(p) in by_id}


def tp_group_of(model) -> Group:
    return getattr(model, "tp_group", None) or SINGLE


def shard_hf_tensors(model, tensors: dict, source: str) -> dict:
    """Full HF tensors -> the pieces this rank's sharded parameters hold (a no-op at tp=1).

    A tensor whose global shape is wrong is reported with its full shape,
    before anything is sliced.
    """
    shards = model_shards(model)
    if not shards:
        return tensors
    group = tp_group_of(model)
    out = dict(tensors)
    for name, (p, e) in model.hf_layout().items():
        shard = shards.get(id(p))
        if shard is None or name not in tensors:
            continue
        want = list(p.shape[1:] if e is not None else p.shape)
        axis = shard.axis - (1 if e is not None else 0)
        want[axis] = shard.full
        arr = tensors[name]
        if tuple(arr.shape) != tuple(want):
            raise MftError(f"{source}: tensor {name} has shape {tuple(arr.shape)} but the model expects {tuple(want)}")
        out[name] = shard_array(arr, Shard(axis, shard.full, shard.size), group.rank)
    return out


def gather_full(model, values: dict[str, np.ndarray], key_param=None) -> dict[str, np.ndarray]:
    """{name: this rank's array} -> {name: global array}; a collective every tp rank calls with the same names.

    `key_param(name)` gives the parameter name a value belongs to (default: itself),
    e.g. `exp_avg.<param>` -> `<param>` for optimizer moments.
    """
    shards = shards_by_name(model)
    group = tp_group_of(model)
    if group.size == 1 or not shards:
        return dict(values)
    import mindspore as ms

    from mft.parallel.comm import AllGather

    gather = AllGather(group, 0)
    out = {}
    for name in sorted(values):
        shard = shards.get(key_param(name) if key_param else name)
        arr = values[name]
        if shard is None:
            out[name] = arr
            continue
        moved = np.ascontiguousarray(np.moveaxis(arr, shard.axis, 0))  # gather along dim 0
        pieces = gather(ms.Tensor(moved)).asnumpy().reshape((group.size,) + moved.shape)
        out[name] = unshard_arrays([np.moveaxis(p, 0, shard.axis) for p in pieces], shard)
    return out


def shard_values(model, values: dict[str, np.ndarray], key_param=None) -> dict[str, np.ndarray]:
    """The inverse of `gather_full` for this rank: global arrays -> this rank's pieces."""
    shards = shards_by_name(model)
    group = tp_group_of(model)
    out = {}
    for name, arr in values.items():
        shard = shards.get(key_param(name) if key_param else name)
        out[name] = arr if shard is None or np.ndim(arr) == 0 else shard_array(arr, shard, group.rank)
    return out


def state_param_name(state_name: str) -> str:
    """Optimizer state `exp_avg.<param>` / `exp_avg_sq.<param>` -> `<param>`."""
    return state_name.split(".", 1)[1] if "." in state_name else state_name


# ----------------------------------------------------------------------------- train-step cells


def partial_grad_params(model) -> set[int]:
    """ids of replicated parameters whose gradient each tp rank holds only in part (summed over tp).

    Cells mark them: `tp_partial_grads = True` (all the cell's parameters) or `tp_partial_attrs`
    (names). With sequence parallelism every RMSNorm is partial too (it sees 1/tp of the tokens).
    """
    from mft.ops.rms_norm import RMSNorm

    sp = bool(getattr(model, "sequence_parallel", False))
    out = set()
    for _, cell in model.cells_and_names():
        if getattr(cell, "tp_partial_grads", False) or (sp and isinstance(cell, RMSNorm)):
            for p in cell.get_parameters():
                out.add(id(p))
        for attr in getattr(cell, "tp_partial_attrs", ()):
            p = getattr(cell, attr, None)
            if p is not None:
                out.add(id(p))
    return out


def _cells():
    import mindspore as ms
    from mindspore import nn, ops

    from mft.parallel.comm import AllReduce

    class TPGradReducer(nn.Cell):
        """grads -> grads with the tp-partial ones summed over the tp group, then `inner` (the dp mean) if any."""

        def __init__(self, group: Group, partial: tuple, inner=None):
            super().__init__(auto_prefix=False)
            self.partial = partial
            self.any_partial = any(partial) and group.size > 1
            self.all_reduce = AllReduce(group, "sum")
            self.inner = inner
            self.has_inner = inner is not None

        def construct(self, grads):
            if self.any_partial:
                out = ()
                for i in range(len(grads)):
                    out = out + ((self.all_reduce(grads[i]),) if self.partial[i] else (grads[i],))
                grads = out
            if self.has_inner:
                grads = self.inner(grads)
            return grads

    class TPGradNorm(nn.Cell):
        """Global L2 norm of the full model's gradient: sharded pieces summed over tp, replicated counted once."""

        def __init__(self, group: Group, sharded: tuple):
            super().__init__(auto_prefix=False)
            self.sharded = sharded
            self.any_sharded = any(sharded)
            self.any_replicated = not all(sharded)
            self.all_reduce = AllReduce(group, "sum")

        def construct(self, grads):
            total = ops.zeros((), ms.float32)
            if self.any_sharded:
                parts = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if self.sharded[i]]
                total = total + self.all_reduce(ops.square(ops.concat(parts)).sum().reshape(1)).reshape(())
            if self.any_replicated:
                parts = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if not self.sharded[i]]
                total = total + ops.square(ops.concat(parts)).sum()
            return ops.sqrt(total)

    return TPGradReducer, TPGradNorm


def grad_reducer(model, params, inner=None):
    """The train step's grad_reducer for a tp model: tp sums of partial grads, then `inner` (dp); `inner` at tp=1."""
    group = tp_group_of(model)
    partial_ids = partial_grad_params(model)
    partial = tuple(id(p) in partial_ids for p in params)
    if group.size == 1 or not any(partial):
        return inner
    reducer, _ = _cells()
    return reducer(group, partial, inner)


def grad_norm(model, params):
    """A Cell computing the global grad norm over the tp group, or None at tp=1 (the plain norm is right)."""
    group = tp_group_of(model)
    if group.size == 1:
        return None
    shards = model_shards(model)
    _, norm = _cells()
    return norm(group, tuple(id(p) in shards for p in params))


# ----------------------------------------------------------------------------- config checks

TP_ARCHS = ("llama", "qwen2", "qwen3")


def check_config(cfg) -> None:
    """Load-time checks of a recipe with parallel.tp > 1 (MftError naming the key)."""
    p = cfg.parallel
    tp = p.tp
    if not isinstance(tp, int) or tp < 1:
        raise MftError(f"parallel.tp must be an integer >= 1, got {tp!r}")
    if p.sp and tp == 1:
        raise MftError("parallel.sp (sequence parallel) splits activations over the tensor-parallel group; "
                       "it needs parallel.tp > 1")
    if tp == 1:
        return
    if p.sp and cfg.data.seq_len % tp:
        raise MftError(f"parallel.sp with parallel.tp={tp}: data.seq_len={cfg.data.seq_len} must be a multiple of tp")
    m = cfg.model
    if m.arch not in TP_ARCHS:
        raise MftError(f"parallel.tp={tp}: tensor parallelism is implemented for the dense families "
                       f"({', '.join(TP_ARCHS)}), not model.arch={m.arch}; set parallel.tp=1")
    if not m.pretrained:  # a pretrained folder's sizes are checked when the model is built
        kv = m.num_kv_heads or m.num_heads
        for key, value in (("model.num_heads", m.num_heads), ("model.num_kv_heads", kv),
                           ("model.intermediate_size", m.intermediate_size)):
            divide(value, tp, key)
    if cfg.finetune.method != "full":
        raise MftError(f"parallel.tp={tp} with finetune.method={cfg.finetune.method}: LoRA is not tensor-parallel yet; "
                       "set parallel.tp=1")
    if cfg.train.optimizer.name != "adamw":
        raise MftError(f"parallel.tp={tp} with train.optimizer.name={cfg.train.optimizer.name}: only adamw's update is "
                       "element-wise (the same on a shard as on the full tensor); use adamw or parallel.tp=1")
    if cfg.monitor.spike.action == "skip" or cfg.monitor.layer_norms:
        raise MftError(f"parallel.tp={tp}: monitor.spike.action=skip and monitor.layer_norms need per-tensor norms over "
                       "tp shards, which are not implemented; use another spike action / layer_norms=false, or parallel.tp=1")


def full_hf_shapes(model, local_shapes: dict) -> dict:
    """{HF name: this rank's shape} -> {HF name: the global shape} (unchanged at tp=1)."""
    shards = model_shards(model)
    if not shards:
        return local_shapes
    out = dict(local_shapes)
    for name, (p, e) in model.hf_layout().items():
        shard = shards.get(id(p))
        if shard is not None and name in out:
            shape = list(out[name])
            shape[shard.axis - (1 if e is not None else 0)] = shard.full
            out[name] = tuple(shape)
    return out


def global_numel(model, params) -> int:
    """Elements of `params` in the whole model (a sharded parameter counted at its global size)."""
    shards = model_shards(model)
    total = 0
    for p in params:
        n = int(np.prod(p.shape))
        shard = shards.get(id(p))
        total += n // shard.local * shard.full if shard is not None else n
    return total
