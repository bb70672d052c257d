"""ZeRO-1 and ZeRO-2 (`parallel.zero`): AdamW's state sharded across the data-parallel ranks.

The trainable parameters are laid end to end in one flat fp32 buffer,
padded to a multiple of dp (`zero_layout.FlatLayout`); dp rank r owns the
r-th 1/dp of it. `ZeroAdamW` keeps AdamW's two moments only for its shard
(two Parameters of `shard` elements: `exp_avg.zero_shard`,
`exp_avg_sq.zero_shard`) and, inside the compiled step:

1. takes its shard of the gradient: zero=1 slices it from the full,
   all-reduced gradients (`GradAllReduce`, as at zero=0); zero=2 gets it
   from `ZeroGradReduceScatter`, which reduce-scatters the flat gradient
   (mean over dp) so no rank ever holds the whole averaged gradient, and
   whose clip norm (`ZeroGradNorm`) is the square root of the all-reduced
   sum of the shards' squares, i.e. the unsharded global norm;
2. updates its moments and its slice of the weights with AdamW's rule
   element by element: the bias correction is folded into lr and eps as
   in `optim/adamw.py`, and each contiguous run of elements that share a
   parameter group gets that group's lr multiplier and weight decay, so
   no-decay parameters and `param_groups` apply per element;
3. all-gathers the updated slices and writes every parameter back.

The model's weights stay whole on every rank (they are the fp32 master
copy; the forward casts them on use): sharding them is ZeRO-3. Under tensor
parallelism the flat buffer is made of this rank's tp pieces and the dp
group shards it; the clip norm then sums tp-sharded elements over tp too.

Checkpoints keep the zero=0 format: `full_state` all-gathers the shards
into `exp_avg.<param>` / `exp_avg_sq.<param>` (a dp collective every rank
joins), `shard_saved_state` slices a loaded one for this rank, so a run
saved at any dp / zero resumes at any other.

Only AdamW is sharded: Muon's Newton–Schulz step needs whole matrices and
Adafactor keeps factored row/column moments, so neither is element-wise on
a flat slice; `check_config` refuses them naming parallel.zero and
train.optimizer.name.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from mft.errors import MftError
from mft.parallel.comm import AllGather, AllReduce, ReduceScatter
from mft.parallel.groups import Group
from mft.parallel.zero_config import STAGES, check_config  # noqa: F401  (re-exported)
from mft.parallel.zero_layout import FlatLayout

SHARD_NAMES = ("exp_avg", "exp_avg_sq")  # AdamW's per-element state, stored as <kind>.zero_shard on a rank


def _flat_shard(tensors, seg_index, seg_start, seg_stop, pad):
    """This rank's shard (fp32, 1-D) of a tuple of per-parameter tensors, from the static segments."""
    pieces = ()
    for k in range(len(seg_index)):
        pieces = pieces + (tensors[seg_index[k]].astype(ms.float32).reshape(-1)[seg_start[k]:seg_stop[k]],)
    if pad:
        pieces = pieces + (ops.zeros((pad,), ms.float32),)
    if len(pieces) == 1:
        return pieces[0]
    return ops.concat(pieces)


class ZeroGradReduceScatter(nn.Cell):
    """ZeRO-2's grad reducer: grads tuple -> (this rank's shard of the dp-mean flat gradient,)."""

    def __init__(self, group: Group, layout: FlatLayout):
        super().__init__(auto_prefix=False)
        self.pad = layout.padded - layout.total
        self.rs = ReduceScatter(group, 0, "mean")

    def construct(self, grads):
        pieces = ()
        for g in grads:
            pieces = pieces + (g.astype(ms.float32).reshape(-1),)
        if self.pad:
            pieces = pieces + (ops.zeros((self.pad,), ms.float32),)
        return (self.rs(ops.concat(pieces)),)


class ZeroGradNorm(nn.Cell):
    """Global L2 norm of the whole gradient from each rank's flat shard (ZeRO-2).

    Sum of squares over the shard, all-reduced over dp. Under tensor
    parallelism the elements of tp-sharded parameters are also summed over
    tp (each tp rank holds another piece), replicated ones are counted once.
    """

    def __init__(self, dp: Group, tp: Group, sharded_runs: tuple, replicated_runs: tuple):
        super().__init__(auto_prefix=False)
        self.dp_sum = AllReduce(dp, "sum")
        self.tp_sum = AllReduce(tp, "sum")
        self.tp = tp.size > 1
        self.sh_a = tuple(a for a, _ in sharded_runs)
        self.sh_b = tuple(b for _, b in sharded_runs)
        self.re_a = tuple(a for a, _ in replicated_runs)
        self.re_b = tuple(b for _, b in replicated_runs)

    def _sq(self, x, starts, stops):
        total = ops.zeros((1,), ms.float32)
        for k in range(len(starts)):
            total = total + ops.square(x[starts[k]:stops[k]]).sum().reshape(1)
        return total

    def construct(self, grads):
        shard = grads[0]
        if self.tp:
            total = self.tp_sum(self._sq(shard, self.sh_a, self.sh_b)) + self._sq(shard, self.re_a, self.re_b)
        else:
            total = ops.square(shard).sum().reshape(1)
        return ops.sqrt(self.dp_sum(total).reshape(()))


class ZeroAdamW(nn.Cell):
    """AdamW with its moments sharded over `group` (the dp group); `construct(grads, lr)` as AdamW's.

    `grads`: the full gradient tuple (stage 1) or `(shard,)` (stage 2).
    `lr_scales` / `weight_decays`: one per parameter, as AdamW's.
    """

    def __init__(self, params, group: Group, stage: int, betas=(0.9, 0.95), eps=1e-8, lr_scales=None,
                 weight_decays=None, tp_group: Group | None = None, tp_sharded=None):
        super().__init__(auto_prefix=False)
        if stage not in (1, 2):
            raise MftError(f"parallel.zero: ZeroAdamW needs stage 1 or 2, got {stage}")
        self.params = ParameterTuple(params)
        n = len(self.params)
        self.zero_stage = stage
        self.group = group
        self.tp_group = tp_group
        self.tp_sharded = tuple(bool(s) for s in (tp_sharded or [False] * n))
        self.layout = FlatLayout.of_shapes([tuple(p.shape) for p in self.params], group.size)
        self.shapes = tuple(tuple(p.shape) for p in self.params)
        self.lr_scales = tuple(float(s) for s in (lr_scales if lr_scales is not None else [1.0] * n))
        self.weight_decays = tuple(float(w) for w in (weight_decays if weight_decays is not None else [0.0] * n))
        if len(self.lr_scales) != n or len(self.weight_decays) != n:
            raise MftError(f"ZeroAdamW: {n} parameters but {len(self.lr_scales)} lr scales and "
                           f"{len(self.weight_decays)} weight decays")
        rank = group.rank
        segs = self.layout.segments(rank)
        self.seg_index = tuple(s.index for s in segs)
        self.seg_start = tuple(s.start for s in segs)
        self.seg_stop = tuple(s.stop for s in segs)
        self.pad = self.layout.pad(rank)
        keys = [(self.lr_scales[i], self.weight_decays[i]) for i in range(n)]
        runs = self.layout.runs(rank, keys)
        self.run_a = tuple(a for a, _, _ in runs)
        self.run_b = tuple(b for _, b, _ in runs)
        self.run_scale = tuple(1.0 if k is None else k[0] for _, _, k in runs)
        self.run_decay = tuple(0.0 if k is None else k[1] for _, _, k in runs)
        shard = self.layout.shard
        self.exp_avg = Parameter(Tensor(np.zeros(shard, np.float32)), name="exp_avg.zero_shard", requires_grad=False)
        self.exp_avg_sq = Parameter(Tensor(np.zeros(shard, np.float32)), name="exp_avg_sq.zero_shard", requires_grad=False)
        self.step_count = Parameter(Tensor(0, ms.int32), name="optimizer_step", requires_grad=False)
        self.beta1, self.beta2, self.eps = float(betas[0]), float(betas[1]), float(eps)
        self.gather = AllGather(group, 0)
        self.offsets = self.layout.offsets
        self.sizes = self.layout.sizes

    # ------------------------------------------------------------------ train-step hooks (training/train_step.py)

    def grad_reducer(self):
        """Stage 2: the reducer that reduce-scatters gradients into this rank's shard (None at stage 1)."""
        return ZeroGradReduceScatter(self.group, self.layout) if self.zero_stage == 2 else None

    def grad_norm(self):
        """Stage 2: the clip norm from the gradient shard (None at stage 1: the full gradient's norm is used)."""
        if self.zero_stage != 2:
            return None
        tp = self.tp_group if self.tp_group is not None else Group("tp", (0,), 0, None)
        runs = self.layout.runs(self.group.rank, self.tp_sharded)
        sharded = tuple((a, b) for a, b, k in runs if k)
        replicated = tuple((a, b) for a, b, k in runs if not k)
        return ZeroGradNorm(self.group, tp, sharded, replicated)

    def grad_buffers(self):
        """Stage 2 with gradient accumulation: one buffer of `shard` elements (stage 1: None, full buffers)."""
        if self.zero_stage != 2:
            return None
        zeros = Tensor(np.zeros(self.layout.shard, np.float32))
        return ParameterTuple([Parameter(zeros, name="grad_accum.zero_shard", requires_grad=False)])

    # ------------------------------------------------------------------ the update

    def construct(self, grads, lr):
        step = self.step_count + 1
        ops.assign(self.step_count, step)
        stepf = step.astype(ms.float32)
        root2 = ops.sqrt(1.0 - ops.pow(self.beta2, stepf))
        c = root2 / (1.0 - ops.pow(self.beta1, stepf))
        lr_t = lr * c
        eps_t = self.eps * root2
        if self.zero_stage == 2:
            g = grads[0]
        else:
            g = _flat_shard(grads, self.seg_index, self.seg_start, self.seg_stop, self.pad)
        m = self.exp_avg * self.beta1 + g * (1.0 - self.beta1)
        v = self.exp_avg_sq * self.beta2 + ops.square(g) * (1.0 - self.beta2)
        ops.assign(self.exp_avg, m)
        ops.assign(self.exp_avg_sq, v)
        update = m / (ops.sqrt(v) + eps_t)
        p = _flat_shard(self.params, self.seg_index, self.seg_start, self.seg_stop, self.pad)
        pieces = ()
        for k in range(len(self.run_a)):
            a, b = self.run_a[k], self.run_b[k]
            lr_k = lr_t * self.run_scale[k]
            p_k = p[a:b]
            if self.run_decay[k] == 0.0:
                pieces = pieces + (p_k - lr_k * update[a:b],)
            else:
                pieces = pieces + (p_k - lr_k * (update[a:b] + (self.run_decay[k] / c) * p_k),)
        new = pieces[0] if len(pieces) == 1 else ops.concat(pieces)
        full = self.gather(new)  # every rank's updated shard, in rank order: the padded flat buffer
        for i in range(len(self.params)):
            piece = full[self.offsets[i]:self.offsets[i] + self.sizes[i]].reshape(self.shapes[i])
            ops.assign(self.params[i], piece.astype(self.params[i].dtype))
        return step

    # ------------------------------------------------------------------ state for checkpoints

    def state_tensors(self) -> dict[str, Parameter]:
        """This rank's live state (its shards): what fault handling snapshots. `full_state` is what is saved."""
        return {"optimizer_step": self.step_count, "exp_avg.zero_shard": self.exp_avg, "exp_avg_sq.zero_shard": self.exp_avg_sq}

    def gather_state(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`state` (this rank's arrays, shard names) -> the zero=0 names with whole (tp-local) tensors.
        A collective over the dp group: every rank calls it."""
        out = {k: v for k, v in state.items() if not k.endswith(".zero_shard")}
        gather = AllGather(self.group, 0)
        for kind in SHARD_NAMES:
            shard = state[f"{kind}.zero_shard"]
            flat = gather(Tensor(np.ascontiguousarray(shard, np.float32))).asnumpy()
            for p, arr in zip(self.params, self.layout.unflatten(flat, self.shapes)):
                out[f"{kind}.{p.name}"] = np.ascontiguousarray(arr)
        return out

    def shard_saved_state(self, saved: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
        """A loaded zero=0-format state (`exp_avg.<param>`, ...) -> this rank's shard names; other entries kept."""
        out = {k: v for k, v in saved.items() if not any(k.startswith(kind + ".") for kind in SHARD_NAMES)}
        for kind in SHARD_NAMES:
            arrays = []
            for p, shape in zip(self.params, self.shapes):
                name = f"{kind}.{p.name}"
                if name not in saved:
                    raise MftError(f"{source}/optimizer.safetensors: missing optimizer state {name!r}")
                arr = np.asarray(saved[name])
                if tuple(arr.shape) != shape:
                    raise MftError(f"{source}/optimizer.safetensors: {name!r} has shape {tuple(arr.shape)}, "
                                   f"the model needs {shape}")
                arrays.append(arr)
            out[f"{kind}.zero_shard"] = self.layout.shard_of(arrays, self.group.rank)
        return out

    def describe(self, step_fn=None) -> dict:
        """What this rank holds, from the Parameters that exist (for the rank log and tests)."""
        state = sum(int(np.prod(t.shape)) for t in self.state_tensors().values())
        info = {"stage": self.zero_stage, "dp": self.group.size, "rank": self.group.rank,
                "parameters": self.layout.total, "shard": self.layout.shard, "optimizer_state_elements": state}
        if step_fn is not None:
            buffers = getattr(step_fn, "grad_buffers", None)
            info["grad_buffer_elements"] = sum(int(np.prod(b.shape)) for b in buffers) if buffers is not None else 0
            # every Parameter the compiled step cells hold (weights, optimizer state, buffers), each once
            held = {}
            for attr in ("_fused", "_micro", "_apply"):
                cell = getattr(step_fn, attr, None)
                if cell is not None:
                    held.update((id(p), p) for p in cell.get_parameters())
            info["step_parameter_elements"] = sum(int(np.prod(p.shape)) for p in held.values())
        return info


# ---------------------------------------------------------------------------- trainer helpers


def build_optimizer(cfg, params, dp_group: Group, model):
    """The `parallel.zero` optimizer (ZeroAdamW) over `params`, with train.optimizer's groups and rules."""
    from mft.parallel import tensor_parallel
    from mft.training.optim.rules import param_settings

    check_config(cfg)
    opt = cfg.train.optimizer
    params = list(params)
    settings = param_settings(params, opt.weight_decay, opt.param_groups)
    shards = tensor_parallel.model_shards(model)
    return ZeroAdamW(params, dp_group, cfg.parallel.zero, betas=opt.betas, eps=opt.eps,
                     lr_scales=[s.lr_scale for s in settings], weight_decays=[s.weight_decay for s in settings],
                     tp_group=tensor_parallel.tp_group_of(model), tp_sharded=[id(p) in shards for p in params])


def is_zero(optimizer) -> bool:
    return isinstance(optimizer, ZeroAdamW)


def full_state(step_fn) -> dict[str, np.ndarray]:
    """The step's state to save as arrays; under ZeRO the shards are gathered into the zero=0 names
    (a dp collective: every rank calls it)."""
    state = {name: p.asnumpy() for name, p in step_fn.state_tensors().items()}
    if is_zero(step_fn.optimizer):
        state = step_fn.optimizer.gather_state(state)
    return state


def shard_saved_state(optimizer, saved: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """A loaded optimizer state for this rank (sliced to its shard under ZeRO; unchanged otherwise)."""
    if is_zero(optimizer):
        return optimizer.shard_saved_state(saved, source)
    return saved
