"""Expert parallelism (parallel.ep): each rank of an ep group holds num_experts / ep experts.

This module: the build context, which experts a rank owns, the model-level queries (its expert stacks,
their ep group), the config checks and the entry points the rest of mft calls. The jobs live in their own
modules: the dispatch cells in `expert_dispatch`, the gradient reduction and norm in `expert_grads`, the
checkpoint gather / shard in `expert_checkpoint`. Under pipeline parallelism (parallel.pp > 1) each stage's
MoE layers are expert-parallel over the stage's ranks (mft.parallel.groups), and the pipeline step uses the
same reducer (mft.parallel.pipeline).

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

Gradients (`grad_reducer`, expert_grads): dense parameters are averaged over dp as today;
an expert's gradient already sums the contributions of every token of its ep
group (they came back through the all-to-all), so expert stacks are summed
over the expert-data-parallel group (`edp`: the ranks holding the same
experts) and divided by dp. `grad_norm` counts dense gradients once and sums
the expert gradients' squares over the ep group (each expert once).

Checkpoints stay full Hugging Face folders (expert_checkpoint): `gather_values` all-gathers the
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


# ----------------------------------------------------------------------------- the jobs in their own modules


def sorted_dispatch(group: Group, num_experts: int, top_k: int):
    """The dropless sorted dispatch cell (mft.parallel.expert_dispatch)."""
    from mft.parallel.expert_dispatch import SortedExpertDispatch

    return SortedExpertDispatch(group, num_experts, top_k)


def capacity_dispatch(group: Group, num_experts: int):
    """The capacity dispatch cell (mft.parallel.expert_dispatch)."""
    from mft.parallel.expert_dispatch import CapacityExpertDispatch

    return CapacityExpertDispatch(group, num_experts)


def grad_reducer(model, params, dp: Group, edp: Group):
    """mft.parallel.expert_grads.grad_reducer: the train step's reducer with ep-split stacks, else None."""
    from mft.parallel import expert_grads

    return expert_grads.grad_reducer(model, params, dp, edp)


def grad_norm(model, params):
    """mft.parallel.expert_grads.grad_norm: the global-norm Cell with ep-split stacks, else None."""
    from mft.parallel import expert_grads

    return expert_grads.grad_norm(model, params)


def gather_values(model, values: dict, key_param=None) -> dict:
    """mft.parallel.expert_checkpoint.gather_values: expert stacks all-gathered over ep (a collective)."""
    from mft.parallel import expert_checkpoint

    return expert_checkpoint.gather_values(model, values, key_param)


def shard_values(model, values: dict, key_param=None) -> dict:
    """mft.parallel.expert_checkpoint.shard_values: full arrays -> this rank's experts."""
    from mft.parallel import expert_checkpoint

    return expert_checkpoint.shard_values(model, values, key_param)


def init_shards(model) -> dict:
    """mft.parallel.expert_checkpoint.init_shards: draw all experts, keep ours."""
    from mft.parallel import expert_checkpoint

    return expert_checkpoint.init_shards(model)


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
