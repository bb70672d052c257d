"""Several LoRA adapters served over one base model, chosen per request (`mft serve --adapter NAME=DIR`).

Adapters are PEFT folders (mft.finetune.lora reads and checks them). Every
linear layer that any adapter targets gets stacked weights:
A (K + 1, R, in) and B (K + 1, out, R), K adapters plus slot 0 (zeros: the
base model), R the largest rank (smaller ranks padded with zero rows, which
add nothing), each adapter's B pre-multiplied by its scaling
(lora_alpha / r, or / sqrt(r) with rsLoRA). A layer an adapter does not
target holds zeros in its slot. So one batch mixes requests for different
adapters and the base model:

    y[b] = x[b] W^T + (x[b] A[k_b]^T) B[k_b]^T,   k_b = the adapter of row b

PEFT `modules_to_save` (layers trained in full, saved whole) are served the
same way when they are linear layers' weights (lm_head, a projection): the
layer gets D (K + 1, out, in), each adapter's saved weight minus the base
weight (zeros elsewhere), and adds x[b] D[k_b]^T. A saved embedding, norm or
bias is refused naming the adapter file and key (merge it with
`mft weights merge-lora` instead).

The row -> adapter indices live in one int32 Parameter shared by all those
layers (`rows`, one entry per possible batch row); the engine sets it
before each forward (padding rows: 0). Compiled decode graphs read it as a
graph input, so a new mix needs no recompilation.
"""

from __future__ import annotations

import os

import numpy as np

from mft.errors import MftError

_CLASSES: dict = {}


def _multi_class(base_cls, lora: bool = True, full: bool = False):
    """base_cls with the per-row adapter terms: LoRA (x A^T B^T) and/or a whole-weight delta (x D^T, a
    modules_to_save linear: D = its saved weight - the base weight)."""
    key = (base_cls, lora, full)
    if key in _CLASSES:
        return _CLASSES[key]

    def construct(self, x):
        y = base_cls.construct(self, x)
        b = x.shape[0]
        h = x.reshape(b, -1, x.shape[-1])
        rows = self.lora_rows[:b]
        if self.compute_dtype is not None:
            h = h.astype(self.compute_dtype)
        if lora:
            a = self._lora_gather(self.lora_a_stack, rows, 0)  # (b, R, in)
            bb = self._lora_gather(self.lora_b_stack, rows, 0)  # (b, out, R)
            if self.compute_dtype is not None:
                a, bb = a.astype(self.compute_dtype), bb.astype(self.compute_dtype)
            delta = self._lora_bmm(self._lora_bmm(h, a), bb)  # (b, S, out)
            y = y + delta.reshape(y.shape).astype(y.dtype)
        if full:
            d = self._lora_gather(self.full_delta_stack, rows, 0)  # (b, out, in)
            if self.compute_dtype is not None:
                d = d.astype(self.compute_dtype)
            y = y + self._lora_bmm(h, d).reshape(y.shape).astype(y.dtype)
        return y

    name = "MultiLora" if lora else "MultiSaved"
    cls = type(f"{name}{'Saved' if lora and full else ''}{base_cls.__name__}", (base_cls,),
               {"construct": construct, "__module__": __name__})
    _CLASSES[key] = cls
    return cls


def parse_adapter_args(values) -> list[tuple[str, str]]:
    """['NAME=DIR' or 'DIR', ...] -> [(name, dir)]; a bare DIR is named after its folder."""
    out = []
    for v in values or []:
        name, sep, folder = v.partition("=")
        if not sep:
            name, folder = os.path.basename(os.path.normpath(v)), v
        if not name or not folder:
            raise MftError(f"--adapter {v!r}: expected NAME=DIR")
        if not os.path.isfile(os.path.join(folder, "adapter_config.json")):
            raise MftError(f"--adapter {v!r}: {folder} has no adapter_config.json (not a PEFT adapter folder)")
        if name in [n for n, _ in out]:
            raise MftError(f"--adapter {v!r}: the name {name!r} is given twice")
        out.append((name, folder))
    return out


def _saved_tensors(name: str, folder: str, settings, tensors: dict, lora_keys: set, linears: dict) -> list:
    """[(key, linear's HF path)] of the adapter's modules_to_save tensors. Served per request: a linear
    layer's weight (lm_head, a projection). Anything else (an embedding, a norm, a bias) is refused with
    the file and key named: `mft weights merge-lora` merges it into a model folder instead."""
    from mft.finetune.lora import ADAPTER_WEIGHTS, KEY_PREFIX

    out = []
    source = os.path.join(folder, ADAPTER_WEIGHTS)
    for key in sorted(set(tensors) - lora_keys):
        if ".lora_A." in key or ".lora_B." in key or not key.startswith(KEY_PREFIX):
            continue  # not a saved module (reported as unexpected by the caller)
        module, _, param = key[len(KEY_PREFIX):].rpartition(".")
        if not settings.modules_to_save or not any(module == m or module.endswith("." + m) for m in settings.modules_to_save):
            continue
        cell = linears.get(module)
        if cell is None or param != "weight":
            what = "a linear layer's bias" if cell is not None else f"{module!r}, which is not a linear layer of the model"
            raise MftError(f"--adapter {name}={folder}: {source} holds {key}, a modules_to_save tensor of {what}; "
                           "mft serve serves modules_to_save per request only for linear layers' weights (lm_head, "
                           "projections). Merge the adapter into a model folder and serve that instead: "
                           f"mft weights merge-lora BASE {folder} OUT")
        if tuple(tensors[key].shape) != (cell.out_features, cell.in_features):
            raise MftError(f"--adapter {name}={folder}: {source}: {key} (modules_to_save) has shape "
                           f"{tuple(tensors[key].shape)}, the model's {module} is {(cell.out_features, cell.in_features)}")
        if getattr(cell, "weight", None) is None or cell.weight.dtype not in (ms_float_types()):
            raise MftError(f"--adapter {name}={folder}: {source}: {key} (modules_to_save) replaces {module}, "
                           "which holds quantized weights; serve a float base model with this adapter")
        out.append((key, module))
    return out


def ms_float_types():
    import mindspore as ms

    return (ms.float32, ms.float16, ms.bfloat16)


class MultiLora:
    """Applies the adapters to `model` in place; `index[name]` is an adapter's slot (1..K); set_rows() before a forward."""

    def __init__(self, model, adapters: list[tuple[str, str]], max_rows: int):
        import mindspore as ms
        from mindspore import Parameter, ops

        from mft.finetune.lora import KEY_PREFIX, _path_mapper, matches, read_adapter
        from mft.parallel.layers import _Linear

        self.names = [n for n, _ in adapters]
        self.index = {n: i + 1 for i, n in enumerate(self.names)}
        self.max_rows = max_rows
        read = []
        for name, folder in adapters:
            settings, tensors = read_adapter(folder)
            read.append((name, folder, settings, tensors))
        to_hf = _path_mapper(model)
        linears = {to_hf(path): cell for path, cell in model.cells_and_names() if path and isinstance(cell, _Linear)}
        rank = max(s.r for _, _, s, _ in read)
        # per layer: {slot: (A (r, in), B*scaling (out, r))}; saved linears: {slot: saved weight - base weight}
        per_layer: dict[str, dict] = {}
        saved_layers: dict[str, dict] = {}
        for slot, (name, folder, settings, tensors) in enumerate(read, 1):
            used = set()
            for hf, cell in linears.items():
                if not matches(hf, settings.target_modules):
                    continue
                ka, kb = f"{KEY_PREFIX}{hf}.lora_A.weight", f"{KEY_PREFIX}{hf}.lora_B.weight"
                if ka not in tensors or kb not in tensors:
                    raise MftError(f"--adapter {name}={folder}: no {ka if ka not in tensors else kb} for a targeted module")
                a, b = np.asarray(tensors[ka], np.float32), np.asarray(tensors[kb], np.float32)
                if a.shape != (settings.r, cell.in_features) or b.shape != (cell.out_features, settings.r):
                    raise MftError(f"--adapter {name}={folder}: {hf} lora_A {a.shape} / lora_B {b.shape} do not fit "
                                   f"({cell.out_features}, {cell.in_features}) with r={settings.r}")
                per_layer.setdefault(hf, {})[slot] = (a, b * np.float32(settings.scaling))
                used.update((ka, kb))
            if not used:
                raise MftError(f"--adapter {name}={folder}: target_modules {settings.target_modules!r} match no linear layer of the model")
            for key, module in _saved_tensors(name, folder, settings, tensors, used, linears):
                base = linears[module].weight.astype(ms.float32).asnumpy()
                saved_layers.setdefault(module, {})[slot] = np.asarray(tensors[key], np.float32) - base
                used.add(key)
            extra = sorted(set(tensors) - used)
            if extra:
                raise MftError(f"--adapter {name}={folder}: tensors for modules the model lacks or the config does not target: {extra[:3]}")
        self.rows = Parameter(ms.Tensor(np.zeros(max_rows, np.int32)), name="lora_rows", requires_grad=False)
        k = len(read) + 1
        for hf in sorted(set(per_layer) | set(saved_layers)):
            cell = linears[hf]
            slots = per_layer.get(hf)
            saved = saved_layers.get(hf)
            cell.__class__ = _multi_class(type(cell), slots is not None, saved is not None)
            cell._lora_bmm = ops.BatchMatMul(transpose_b=True)
            cell._lora_gather = ops.Gather()
            cell.lora_rows = self.rows
            safe = hf.replace(".", "_")
            if slots is not None:
                a_stack = np.zeros((k, rank, cell.in_features), np.float32)
                b_stack = np.zeros((k, cell.out_features, rank), np.float32)
                for slot, (a, b) in slots.items():
                    a_stack[slot, :a.shape[0]] = a
                    b_stack[slot, :, :b.shape[1]] = b
                cell.lora_a_stack = Parameter(ms.Tensor(a_stack), name=f"{safe}.lora_a_stack", requires_grad=False)
                cell.lora_b_stack = Parameter(ms.Tensor(b_stack), name=f"{safe}.lora_b_stack", requires_grad=False)
            if saved is not None:
                d_stack = np.zeros((k, cell.out_features, cell.in_features), np.float32)
                for slot, d in saved.items():
                    d_stack[slot] = d
                cell.full_delta_stack = Parameter(ms.Tensor(d_stack), name=f"{safe}.full_delta_stack", requires_grad=False)
        self.saved_layers = sorted(saved_layers)
        self.layers = sorted(per_layer)
        self._current = None

    def set_rows(self, slots) -> None:
        """Adapter slot per batch row (0 = base); the rest of the rows get 0."""
        import mindspore as ms

        values = np.zeros(self.max_rows, np.int32)
        values[:len(slots)] = slots
        key = values.tobytes()
        if key != self._current:
            self.rows.set_data(ms.Tensor(values))
            self._current = key
