"""Pipeline parallelism (`parallel.pp`, `parallel.pp_layers`, `parallel.micro_batches`): 1F1B over
the stages of a `DecoderForCausalLM`, activations and their gradients exchanged with neighbours.

Per optimizer step, stage s runs `pipeline_schedule.one_f_one_b(pp, M, s)` over the step's M
gradient-accumulation micro-batches (M = train.grad_accum_steps; `parallel.micro_batches` names the
same number). Every piece is a graph-mode Cell (mft.parallel.pipeline_cells), as the single-process step:

- forward (`StageForward`): the stage's output for the next stage; the stage keeps only its input
  (the received activation) per in-flight micro-batch, at most pp - s of them on stage s.
- backward (`StageBackward`): the stage forward is run again from that kept input, then differentiated
  with the output gradient received from stage s + 1 as sensitivity (GradOperation(sens_param=True));
  the parameter gradients add into per-parameter buffers. This is full activation recompute on every
  stage but the last: the last stage runs forward and backward of its loss in one call when its
  backward is due (in 1F1B that is right after its forward), so it computes nothing twice. Stored
  activations through PyNative `mindspore.vjp` were tried and do not work with more than one forward
  in flight in MindSpore 2.10: a second vjp on the same cell before the first one's backward either
  fails ("Can not find top cell for backward", composed kernels) or silently returns wrong gradients
  (fused kernels); 1F1B keeps up to pp - s forwards in flight.
- exchange (`PairExchange`): one collective on the two-rank group of stage s and a neighbour: each
  side passes a (micro_batch / dp, seq, hidden) fp32 tensor (zeros when it has nothing to send) and
  gets the other's, so "send my activation, receive your gradient" is one call
  (`mft.parallel.comm.Shift`; on CPU the native AllGather on the world group, or the exact AllReduce
  fallback on a sub-group). Measured with 2 CPU workers: 4.6 ms per exchange of a 2x4x8 tensor from
  a graph-mode Cell against 12-130 ms from PyNative.
- apply (`PipelineApplyCell`): after the last backward, the buffers are divided by M, the tied
  embedding's two gradients summed over the pipeline group (both ends then apply the same update, so
  their copies stay identical), averaged over dp, the global norm taken over every stage (squared
  norms all-reduced over the pipeline group, the tied copy counted once), clipped, the optimizer run
  and the buffers zeroed. The last stage's summed loss rides on the same all-reduce, so every rank
  returns the mean loss the single-process run logs.

MoE models (`PipelineStage.moe`): each stage's objective adds its MoE layers' aux loss (sensitivity 1 next
to the received output gradient); the reducer is the expert-parallel one when the stage's experts are split
over its ranks (parallel.ep), whose expert squares the apply cell sums over ep before the pp sum; the last
micro-batch's aux loss and expert loads are summed over pp on the norm's all-reduce (`moe_stats`). The
auxiliary-loss-free bias moves after each micro-batch's forward on the stage owning the router, as in one
process; a non-last stage keeps the biases each in-flight forward saw and writes them back in place
(`AssignValues`) for that micro-batch's recomputing backward, then restores the current ones.

Tensor parallel inside stages (parallel.tp, no sp): the last stage's loss is the vocab-parallel
cross-entropy, tp-partial gradients are summed before the dp mean, the shards' squares summed over tp for
the norm (as the experts' over ep), and saves gather the shards over tp before the stages' broadcast.

Checkpoints (`Pipeline.gather_full`): every rank builds the full model at start (the same seeded init
and the same Hugging Face loading as one process), then releases the other stages' weights, and trains
only its stage's parameters; on save each stage broadcasts its parameters and
optimizer state over the pipeline group, so rank 0 writes the full folder a single process writes (a
pp=2 checkpoint resumes at pp=1 or at any other split, and a pp=1 one at pp=2).
"""

from __future__ import annotations

import json

import numpy as np

import mindspore as ms
from mindspore import ParameterTuple, ops

from mft.errors import MftError
from mft.parallel.comm import Broadcast
from mft.parallel.groups import Group
from mft.parallel.pipeline_cells import (AssignValues, PairExchange, PipelineApplyCell, StageBackward, StageForward,
                                         pair_groups)
from mft.parallel.pipeline_schedule import Compute, one_f_one_b
from mft.parallel.pipeline_config import check_config, micro_batches, stage_layers  # noqa: F401  (re-exported)
from mft.parallel.pipeline_stage import PipelineStage

# ----------------------------------------------------------------------------- the train step


class PipelineTrainStep:
    """TrainStep's interface (`step`, `state_tensors`, `grad_buffers`, `moe_stats`, `last_loss_scale`) for one stage."""

    def __init__(self, stage: PipelineStage, optimizer, clip_grad_norm, accum_steps: int, groups, hidden_size: int,
                 jit: bool = True, grad_reducer=None, is_split: tuple = (), split_group: Group | None = None,
                 bias_rate: float = 0.0):
        self.stage = stage
        self.moe = stage.moe
        self.bias_rate = bias_rate if stage.moe else 0.0
        # The routers whose correction bias moves (auxiliary-loss-free balancing): a non-last stage recomputes a
        # micro-batch's forward in its backward with the biases that forward saw (kept on the host per micro-batch).
        self.bias_params = [p for p in stage.get_parameters() if p.name.endswith("e_score_correction_bias")
                            and p.name.startswith("model.layers.")] if self.bias_rate > 0 and not stage.last else []
        self.optimizer = optimizer
        self.accum_steps = accum_steps
        self.jit = jit
        self.loss_scale = None
        self.moe_stats: dict = {}
        self.last_loss_scale = 1.0
        self.hidden_size = hidden_size
        pp = groups.pp
        self.pp = pp
        self.params = ParameterTuple(optimizer.params)
        self.program = one_f_one_b(pp.size, accum_steps, pp.rank)
        self.exchange = {side: PairExchange(g) for side, g in pair_groups(groups).items()}
        self.grad_buffers = self.params.clone(prefix="grad_accum", init="zeros")
        self._assign_biases = AssignValues(self.bias_params) if self.bias_params else None
        self._forward = StageForward(stage, self.bias_rate)
        self._backward = StageBackward(stage, self.params, self.grad_buffers, stage.last, self.bias_rate)
        tied = stage.tied_embedding()
        tied_index = -1
        if tied is not None:
            tied_index = next(i for i, p in enumerate(self.params) if p is tied or p.name == tied.name)
        tied_shape = None
        if stage.shares_embedding:
            tied_shape = tuple(stage.decoder[0].embed_tokens.weight.shape)
        self._apply = PipelineApplyCell(optimizer, self.grad_buffers, accum_steps, clip_grad_norm, pp, grad_reducer,
                                        tied_index, tied_shape, count_tied=not stage.last or stage.first, moe=self.moe,
                                        is_split=is_split, split_group=split_group)
        self._apply.set_train()
        stage.set_train()

    def state_tensors(self) -> dict:
        return dict(self.optimizer.state_tensors())

    def step(self, input_ids, labels, lr: float) -> tuple[float, float]:
        """input_ids, labels: (accum, micro_batch / dp, ...) as TrainStep takes them -> (mean loss, pre-clip grad norm)."""
        from mft.training.train_step import graph_mode

        stage = self.stage
        ids = [ms.Tensor(input_ids[i]) for i in range(self.accum_steps)]
        lab = [ms.Tensor(labels[i]) for i in range(self.accum_steps)]
        zeros = ops.zeros((input_ids.shape[1], input_ids.shape[-1], self.hidden_size), ms.float32)
        dummy = ops.zeros((1,), ms.float32)
        received: dict[tuple[str, int], ms.Tensor] = {}
        inputs: dict[int, ms.Tensor] = {}  # the stage input of each in-flight micro-batch (all a backward needs)
        outputs: dict[int, ms.Tensor] = {}
        input_grads: dict[int, ms.Tensor] = {}
        losses = []
        biases: dict[int, list] = {}  # bias-moving non-last stages: the router biases each in-flight forward saw
        moe_last = None  # MoE: (aux, loads) of the last micro-batch, as TrainStep reports them
        with graph_mode(self.jit):
            for ins in self.program:
                if isinstance(ins, Compute):
                    m = ins.micro
                    if ins.kind == "F":
                        x = dummy if stage.first else received.pop(("act", m))
                        inputs[m] = x
                        if not stage.last:  # the last stage's forward runs inside its backward call
                            if self.bias_params:  # copies: asnumpy() may share the Parameter's memory on CPU
                                biases[m] = [p.asnumpy().copy() for p in self.bias_params]
                            out = self._forward(x, ids[m], lab[m])
                            if self.moe:
                                out, aux, loads = out
                                moe_last = (aux, loads)
                            outputs[m] = out
                    else:
                        sens = dummy if stage.last else received.pop(("grad", m))
                        current = None
                        if m in biases:  # recompute with the biases of this micro-batch's forward
                            current = [p.asnumpy().copy() for p in self.bias_params]
                            self._set_biases(biases.pop(m))
                        if self.moe:
                            loss, aux, loads, x_grad = self._backward(inputs.pop(m), ids[m], lab[m], sens)
                            if stage.last:
                                moe_last = (aux, loads)
                        else:
                            loss, x_grad = self._backward(inputs.pop(m), ids[m], lab[m], sens)
                        if current is not None:
                            self._set_biases(current)
                        if stage.last:
                            losses.append(loss)
                        if not stage.first:
                            input_grads[m] = x_grad
                    continue
                if ins.send is None:
                    payload = zeros
                elif ins.send[0] == "act":
                    payload = outputs.pop(ins.send[1]).astype(ms.float32)
                else:
                    payload = input_grads.pop(ins.send[1]).astype(ms.float32)
                got = self.exchange[ins.side](payload)
                if ins.recv is not None:
                    received[ins.recv] = got
            loss_sum = sum(float(l.asnumpy()) for l in losses)  # in micro-batch order, as TrainStep adds them
            norm, both = self._apply(ms.Tensor(lr, ms.float32), ms.Tensor(loss_sum, ms.float32), self._moe_extra(moe_last))
            both = both.asnumpy()
            if self.moe:  # every stage's share of the aux loss summed, every stage's MoE layers' loads in layer order
                e = stage.num_experts
                self.moe_stats = {"aux_loss": float(both[2]), "expert_load": both[3:].reshape(stage.num_moe_total, e)}
            return float(both[1]) / self.accum_steps, float(norm.asnumpy())

    def _set_biases(self, values) -> None:
        self._assign_biases(tuple(ms.Tensor(v, dtype=p.dtype) for p, v in zip(self.bias_params, values)))

    def _moe_extra(self, moe_last) -> ms.Tensor:
        """[aux, loads of every MoE layer of the model (this stage's rows filled, zeros elsewhere)] for the pp sum."""
        if not self.moe:
            return ops.zeros((1,), ms.float32)
        st = self.stage
        full = np.zeros((st.num_moe_total, st.num_experts), np.float32)
        aux = 0.0
        if moe_last is not None:
            aux = float(moe_last[0].asnumpy())
            if st.num_moe_local:
                full[st.moe_offset:st.moe_offset + st.num_moe_local] = moe_last[1].asnumpy()
        return ms.Tensor(np.concatenate([np.array([aux], np.float32), full.reshape(-1)]))


# ----------------------------------------------------------------------------- setup and checkpoints


class Pipeline:
    """What the trainer needs under pp > 1: the stage's parameters, its train step, the full-tensor gather for saving."""

    def __init__(self, cfg, model, groups):
        from mft.models.common.decoder import DecoderForCausalLM
        from mft.parallel import tensor_parallel as tpar
        from mft.training.loss import causal_lm_loss, fused_causal_lm_loss

        if not isinstance(model, DecoderForCausalLM):
            raise MftError(f"parallel.pp={cfg.parallel.pp}: pipeline stages are built for decoder models; "
                           f"{type(model).__name__} is not one")
        self.cfg = cfg
        self.model = model
        self.groups = groups
        pp = groups.pp
        self.bounds = stage_layers(model.config.num_hidden_layers, pp.size, cfg.parallel.pp_layers)
        # the single-process step's loss (model.fused_cross_entropy: the C++ kernel)
        loss_fn = fused_causal_lm_loss if getattr(model.config, "fused_cross_entropy", False) else causal_lm_loss
        if tpar.tp_group_of(model).size > 1:  # the last stage's head is vocab-parallel: no rank holds the full logits
            from mft.parallel.cross_entropy import VocabParallelCrossEntropy

            loss_fn = VocabParallelCrossEntropy(model.tp_group, model.config.vocab_size)
        self.stage = PipelineStage(model, pp.rank, pp.size, self.bounds[pp.rank], loss_fn)
        self.params = self.stage.trainable_params()
        self.model_params = model.trainable_params()  # every stage's (for counting)
        from mft.parallel import expert_parallel as epar

        # tp shards and ep expert stacks hold this rank's pieces; counted at their full size
        self.model_numel = epar.global_numel(model, self.model_params, tpar.global_numel(model, self.model_params))
        # Gradients that differ across a group of the stage (ep's experts or tp's shards; tp with ep is refused):
        # the clip norm sums their squares over that group.
        stacks = epar.expert_stacks(model)
        shards = tpar.model_shards(model)
        if stacks:
            self.is_split, self.split_group = tuple(id(p) in stacks for p in self.params), epar.ep_group_of(model)
        else:
            self.is_split, self.split_group = tuple(id(p) in shards for p in self.params), tpar.tp_group_of(model)
        held = {id(p) for p in self.stage.get_parameters()}
        self._elsewhere = [(p, tuple(p.shape)) for p in model.get_parameters() if id(p) not in held]
        self.release_other_stages()
        self._owned = {p.name for p in self.stage.get_parameters()}  # also untrained ones (router correction biases)
        if self.stage.last and self.stage.shares_embedding and not self.stage.first:
            self._owned.discard(self.stage.tied_embedding().name)  # saved from the first stage's copy

    def release_other_stages(self) -> None:
        """Shrinks the other stages' parameters to one element each: this rank never reads them
        (saving takes their values from their own stage), so their memory is given back. Expert stacks keep
        their leading (expert) dimension: the Hugging Face names of a stack count its experts from it."""
        from mft.parallel.layers import GroupedLinear

        stacks = {id(cell.weight) for _, cell in self.model.cells_and_names() if isinstance(cell, GroupedLinear)}
        for p, shape in self._elsewhere:
            small = (shape[0],) + (1,) * (len(shape) - 1) if id(p) in stacks else (1,) * len(shape)
            p.set_data(ms.Tensor(np.zeros(small, np.float32), dtype=p.dtype))

    def restore_full_shapes(self) -> None:
        """The other stages' parameters at their full shapes (zeros) again, so a full Hugging Face folder
        loads into the model (train.nan_action / spike rollback); `release_other_stages` after."""
        for p, shape in self._elsewhere:
            p.set_data(ms.Tensor(np.zeros(shape, np.float32), dtype=p.dtype))

    def load_folder(self, folder: str) -> None:
        """A checkpoint folder's weights into this rank's stage (the model is loaded whole, the rest released)."""
        from mft.training.model_factory import load_weights_from_folder

        self.restore_full_shapes()
        try:
            load_weights_from_folder(self.model, folder)
        finally:
            self.release_other_stages()

    def describe(self) -> str:
        s = self.groups.pp.rank
        a, b = self.bounds[s]
        st = self.stage
        parts = ([f"layers {a}..{b - 1}"] + (["embedding"] if st.first else []) + (["norm, head, loss"] if st.last else [])
                 + (["MTP"] if st.has_mtp else [])
                 + (["tied embedding copy"] if st.last and st.tied and not st.first else [])
                 + (["embedding copy (MTP)"] if st.last and st.shares_embedding and not st.tied and not st.first else []))
        if st.moe:
            parts.append(f"{st.num_moe_local} MoE layers")
        return f"pipeline stage {s} of {self.groups.pp.size}: " + ", ".join(parts) + f"; split {[e - a for a, e in self.bounds]}"

    def train_step(self, optimizer, clip_grad_norm, accum_steps: int, jit: bool, grad_reducer):
        bias_rate = float(getattr(self.model.config, "moe_bias_update_rate", 0.0))
        from mft.parallel import tensor_parallel as tpar

        grad_reducer = tpar.grad_reducer(self.model, self.params, grad_reducer)  # tp: partial grads summed first
        return PipelineTrainStep(self.stage, optimizer, clip_grad_norm, accum_steps, self.groups, self.model.config.hidden_size,
                                 jit=jit, grad_reducer=grad_reducer, is_split=self.is_split, split_group=self.split_group,
                                 bias_rate=bias_rate)

    def gather_full(self, state_tensors: dict) -> tuple[dict, dict]:
        """(every model parameter, every optimizer-state tensor) as full numpy arrays on every rank of the
        pipeline group: each stage broadcasts the parameters it owns and their state (a collective)."""
        from mft.parallel import expert_parallel as epar
        from mft.parallel import tensor_parallel as tpar
        from mft.parallel.tensor_parallel import state_param_name

        own_values = {p.name: p.asnumpy() for p in self.stage.get_parameters() if p.name in self._owned}
        own_state = {k: v.asnumpy() for k, v in state_tensors.items() if "." not in k or k.split(".", 1)[1] in self._owned}
        # ep: the stage's expert stacks all-gathered over its ep group first (a collective of the stage's ranks)
        own_values = epar.gather_values(self.model, own_values)
        own_state = epar.gather_values(self.model, own_state, state_param_name)
        # tp: the stage's shards all-gathered over its tp group (a collective of the stage's ranks)
        own_values = tpar.gather_full(self.model, own_values)
        own_state = tpar.gather_full(self.model, own_state, state_param_name)
        values, state = {}, {}
        for root in range(self.groups.pp.size):
            v = broadcast_arrays(own_values, self.groups.pp, root)
            s = broadcast_arrays(own_state, self.groups.pp, root)
            for k, a in v.items():
                values.setdefault(k, a)
            for k, a in s.items():
                state.setdefault(k, a)  # step counters: every stage has one (equal); the first stage's is kept
        for p in self.model.get_parameters():
            if p.name not in values:
                values[p.name] = p.asnumpy()  # frozen / untrained tensors (none today): as built
        return values, state


def broadcast_arrays(arrays: dict, group: Group, root: int) -> dict:
    """Group rank `root`'s {name: float array} on every rank (names and shapes sent first, as JSON bytes)."""
    if group.size == 1:
        return dict(arrays)
    is_root = group.rank == root
    meta = json.dumps([[k, list(a.shape), str(a.dtype)] for k, a in arrays.items()]).encode() if is_root else b""
    bc = Broadcast(group, root)
    # float32 carries the bytes and the length exactly (< 2**24); the CPU sub-group fallback (an AllReduce) has no int kernel
    n = int(bc(ms.Tensor(np.array([len(meta)], np.float32))).asnumpy()[0])
    raw = np.frombuffer(meta, np.uint8).astype(np.float32) if is_root else np.zeros(n, np.float32)
    meta = bytes(bc(ms.Tensor(raw)).asnumpy().astype(np.uint8).tolist())
    entries = json.loads(meta.decode())
    sizes = [int(np.prod(s)) if s else 1 for _, s, _ in entries]
    total = int(sum(sizes))
    flat = (np.concatenate([arrays[k].astype(np.float32).reshape(-1) for k, _, _ in entries]) if is_root and entries
            else np.zeros(total, np.float32))
    flat = bc(ms.Tensor(flat)).asnumpy() if total else flat
    out, off = {}, 0
    for (k, shape, dtype), n_el in zip(entries, sizes):
        out[k] = flat[off:off + n_el].reshape(shape).astype(dtype)
        off += n_el
    return out


def pipeline_for(cfg, model, groups) -> Pipeline | None:
    """The trainer's hook: a `Pipeline` for this rank when parallel.pp > 1, else None."""
    if groups.pp.size == 1:
        return None
    return Pipeline(cfg, model, groups)
