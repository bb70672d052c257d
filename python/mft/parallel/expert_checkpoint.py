"""Expert-parallel checkpoints (parallel.ep): full Hugging Face folders from and into ep-split expert stacks.

`gather_values` all-gathers the expert stacks over the ep group before a save (every ep rank calls it with the
same names), `shard_values` keeps this rank's experts of full arrays (optimizer moments on resume), and
`init_shards` tells model_factory.init_weights to draw every expert and keep this rank's, so an ep run starts
from the single-process initial weights. mft.models.base names stacked experts by their global index and
loads only the owned ones.
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError
from mft.parallel.expert_parallel import ep_group_of, expert_param_names, expert_stacks


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
