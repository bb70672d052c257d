"""The graph-mode Cells of a pipeline stage's step (mft.parallel.pipeline drives them; its docstring has the
schedule and why the backward recomputes): the neighbour exchange (`PairExchange`, its two-rank groups
`pair_groups`), the stage forward (`StageForward`), the recomputing backward that adds into the gradient
buffers (`StageBackward`), the update (`PipelineApplyCell`: micro-batch mean, tied / MTP embedding sum over pp,
the layout's reducer, the pp-wide clip norm with ep experts' or tp shards' squares summed over their group,
optimizer, MoE statistics on the same all-reduce) and `AssignValues` (router biases written back in place)."""

from __future__ import annotations

import mindspore as ms
from mindspore import ParameterTuple, nn, ops

from mft.errors import MftError
from mft.parallel.comm import AllReduce, Shift
from mft.parallel.groups import Group
from mft.parallel.pipeline_stage import PipelineStage

# ----------------------------------------------------------------------------- communication


class PairExchange(nn.Cell):
    """Both ranks of a two-rank group pass a tensor of one shape and get the other's (one collective)."""

    def __init__(self, group: Group):
        super().__init__()
        if group.size != 2:
            raise MftError(f"a pipeline exchange needs a two-rank group, got {group.size} ranks ({group.kind})")
        self.shift = Shift(group, 1)

    def construct(self, x):
        return self.shift(x)


def pair_groups(groups) -> dict[str, Group]:
    """{"prev": group with stage - 1, "next": group with stage + 1} for this rank (same dp/tp/cp position).
    With pp=2 the pair is the pipeline group itself; otherwise two-rank communicators are created here,
    lower stage pair first on every rank, so creation never waits in a cycle."""
    pp = groups.pp
    out = {}
    if pp.size == 2:
        out["prev" if pp.rank == 1 else "next"] = pp
        return out
    from mft.parallel.comm import launched_by_msrun
    from mft.parallel.groups import group_name

    for side, a in (("prev", pp.rank - 1), ("next", pp.rank)):
        if a < 0 or a + 1 >= pp.size:
            continue
        ranks = (pp.ranks[a], pp.ranks[a + 1])
        name = group_name("pp2", ranks)
        if launched_by_msrun():
            from mindspore.communication import create_group

            create_group(name, list(ranks))
        out[side] = Group("pp2", ranks, ranks.index(groups.rank), name)
    return out


# ----------------------------------------------------------------------------- graph-mode cells


class StageForward(nn.Cell):
    """The stage's forward alone (no gradient): its output goes to the next stage. MoE: (output, aux, loads),
    and the stage's router biases moved by the loads (`bias_rate` > 0), as the single-process step does
    after each micro-batch."""

    def __init__(self, stage: PipelineStage, bias_rate: float = 0.0):
        super().__init__(auto_prefix=False)
        self.stage = stage
        self.bias_rate = bias_rate

    def construct(self, hidden, input_ids, labels):
        out = self.stage(hidden, input_ids, labels)
        if self.bias_rate > 0:  # the returned loads carry the update (an unused side effect may be dropped)
            return out[0], out[1], self.stage.update_expert_bias(out[2], self.bias_rate)
        return out


class StageBackward(nn.Cell):
    """Backward of the stage from an output gradient `sens`, the forward run again first (full recompute: only
    the stage's input hidden states were kept); parameter gradients added into the buffers.
    -> gradient w.r.t. the input hidden states. The last stage (`last`): forward + backward of its loss in
    one call, nothing recomputed; -> (loss, input gradient); `sens` is ignored."""

    def __init__(self, stage: PipelineStage, params: ParameterTuple, buffers: ParameterTuple, last: bool,
                 bias_rate: float = 0.0):
        super().__init__(auto_prefix=False)
        self.stage = stage
        self.params = params
        self.buffers = buffers
        self.last = last
        self.moe = stage.moe
        self.bias_rate = bias_rate if last else 0.0  # other stages move the biases in their forward
        if last:
            self.value_grad = ms.value_and_grad(stage, 0, params, has_aux=self.moe)
        else:
            self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, hidden, input_ids, labels, sens):
        """-> (loss, input gradient) for a dense stage; MoE: (LM loss, aux, loads, input gradient)."""
        aux = ops.zeros((), ms.float32)
        loads = ops.zeros((1, 1), ms.float32)
        if self.last:
            if self.moe:
                (_, loss, aux, loads), (input_grad, grads) = self.value_grad(hidden, input_ids, labels)
                if self.bias_rate > 0:
                    loads = self.stage.update_expert_bias(loads, self.bias_rate)
            else:
                loss, (input_grad, grads) = self.value_grad(hidden, input_ids, labels)
        else:
            if self.moe:  # the stage's aux loss adds to the objective: sensitivity 1 for it, 0 for the loads
                sens = (sens, ops.ones((), ms.float32), ops.zeros((self.stage.num_moe_local or 1, self.stage.num_experts), ms.float32))
            input_grads, grads = self.grad(self.stage, self.params)(hidden, input_ids, labels, sens)
            input_grad = input_grads[0]
            loss = ops.zeros((), ms.float32)
        for i in range(len(self.buffers)):
            ops.assign_add(self.buffers[i], grads[i])
        if self.moe:
            return loss, aux, loads, input_grad
        return loss, input_grad


class PipelineApplyCell(nn.Cell):
    """Mean over micro-batches, tied-embedding sum over pp, dp mean, global clip norm over pp, update, zero buffers.
    -> (pre-clip global norm, [pre-clip squared norm, the last stage's loss sum, MoE: aux loss, expert loads])
    on every rank."""

    def __init__(self, optimizer, buffers: ParameterTuple, accum_steps: int, clip_grad_norm, pp_group: Group,
                 grad_reducer, tied_index: int, tied_shape, count_tied: bool, moe: bool = False,
                 is_split: tuple = (), split_group: Group | None = None):
        super().__init__(auto_prefix=False)
        self.moe = moe  # MoE: the step's aux loss and expert loads ride on the pp all-reduce (`extra`)
        # ep experts / tp shards: gradients that differ across `split_group`, their squares summed over it
        self.is_split = tuple(is_split) if any(is_split) else tuple(False for _ in range(len(buffers)))
        self.split_norm = any(is_split) and split_group is not None and split_group.size > 1
        if self.split_norm:
            self.split_sum = AllReduce(split_group, "sum")
        self.tied_split = tied_index >= 0 and self.is_split[tied_index]
        self.optimizer = optimizer
        self.buffers = buffers
        self.inv = 1.0 / accum_steps
        self.clip = clip_grad_norm
        self.pp_sum = AllReduce(pp_group, "sum")
        self.grad_reducer = grad_reducer
        self.reduce = grad_reducer is not None
        self.tied_index = tied_index  # -1: this stage holds no tied copy
        self.tied_sync = tied_shape is not None  # every stage calls the tied all-reduce (middle stages with zeros)
        self.tied_shape = tuple(tied_shape) if tied_shape is not None else (1,)
        # The tied gradient counts once in the norm: on the first stage (0 elsewhere).
        self.tied_weight = ms.Tensor(1.0 if count_tied and tied_index >= 0 else 0.0, ms.float32)

    def construct(self, lr, loss_sum, extra):
        grads = ()
        for i in range(len(self.buffers)):
            grads = grads + (self.buffers[i] * self.inv,)
        sq = ops.zeros((), ms.float32)
        if self.tied_sync:
            # Every stage runs this all-reduce (a middle stage with zeros), and the norm below depends on its
            # result on every rank: two independent collectives could run in either order per rank.
            tied = grads[self.tied_index] if self.tied_index >= 0 else ops.zeros(self.tied_shape, ms.float32)
            summed = self.pp_sum(tied)
            if self.tied_index >= 0:
                grads = grads[:self.tied_index] + (summed,) + grads[self.tied_index + 1:]
        if self.reduce:
            grads = self.grad_reducer(grads)
        sq_split = ops.zeros((), ms.float32)
        if self.tied_sync:
            tied = grads[self.tied_index] if self.tied_index >= 0 else summed
            if self.tied_split:  # tp: the vocab-parallel embedding's rows
                sq_split = sq_split + ops.square(tied.astype(ms.float32)).sum() * self.tied_weight
            else:
                sq = sq + ops.square(tied.astype(ms.float32)).sum() * self.tied_weight
        for i in range(len(grads)):
            if i == self.tied_index:
                continue
            if self.is_split[i]:
                sq_split = sq_split + ops.square(grads[i].astype(ms.float32)).sum()
            else:
                sq = sq + ops.square(grads[i].astype(ms.float32)).sum()
        if self.split_norm:
            sq_split = self.split_sum(sq_split.reshape(1)).reshape(())
        sq = sq + sq_split
        if self.moe:
            both = self.pp_sum(ops.concat([ops.stack([sq, loss_sum]), extra]))
        else:
            both = self.pp_sum(ops.stack([sq, loss_sum]))
        norm = ops.sqrt(both[0])
        if self.clip is not None and self.clip > 0:
            scale = ops.minimum(ms.Tensor(1.0, ms.float32), self.clip / (norm + 1e-6))
            grads = tuple(g * scale.astype(g.dtype) for g in grads)
        if ops.isfinite(norm):  # as the single-process step: non-finite gradients apply no update
            self.optimizer(grads, lr)
        for i in range(len(self.buffers)):
            ops.assign(self.buffers[i], ops.zeros_like(self.buffers[i]))
        return norm, both


class AssignValues(nn.Cell):
    """Writes host values into Parameters in place, inside a graph (the memory the compiled step graphs read)."""

    def __init__(self, params):
        super().__init__(auto_prefix=False)
        self.targets = ParameterTuple(params)

    def construct(self, values):
        out = ()
        for i in range(len(self.targets)):
            out = out + (ops.assign(self.targets[i], values[i]),)
        return out
