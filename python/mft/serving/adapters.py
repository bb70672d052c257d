"""Several LoRA adapters served over one base model, chosen per request (`mft serve --adapter NAME=DIR`).

Adapters are PEFT folders (mft.finetune.lora reads and checks them). Every
linear layer that any adapter targets gets the K adapters' weights side by
side: A^T (in, K R) and B^T (K R, out), R the largest rank (smaller ranks
padded with zeros, which add nothing), each adapter's B pre-multiplied by its
scaling (lora_alpha / r, or / sqrt(r) with rsLoRA). A layer an adapter does
not target holds zeros in its columns. So one batch mixes requests for
different adapters and the base model (slot 0) without gathering weights per
row (a step can have hundreds of rows, one per prefill token):

    y[b] = x[b] W^T + ((x[b] A^T) * onehot(k_b)) B^T,   k_b = the adapter of row b

where onehot(k_b) keeps the R columns of adapter k_b (none for the base).
PEFT `modules_to_save` (layers trained in full, saved whole) are served the
same way when they are linear layers' weights (lm_head, a projection): the
layer gets D^T (in, K out), each adapter's saved weight minus the base weight
(zeros elsewhere), and adds the row's adapter's block of x[b] D^T (K times a
linear's work). A saved embedding, norm or bias is refused naming the adapter
file and key (merge it with `mft weights merge-lora` instead).

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
    from mindspore import mint  # (a closure of construct: this module imports MindSpore lazily)

    def construct(self, x):
        y = base_cls.construct(self, x)
        b = x.shape[0]
        h = x.reshape(b, -1, x.shape[-1])
        # one-hot of each row's adapter over the stacked adapters' columns (slot 0, the base, matches none)
        pick = (self.lora_slot_of.reshape(1, 1, -1) == self.lora_rows[:b].reshape(b, 1, 1)).astype(h.dtype)
        if self.compute_dtype is not None:
            h = h.astype(self.compute_dtype)
            pick = pick.astype(self.compute_dtype)
        if lora:
            a, bb = self.lora_a_cat, self.lora_b_cat  # (in, K R), (K R, out)
            if self.compute_dtype is not None:
                a, bb = a.astype(self.compute_dtype), bb.astype(self.compute_dtype)
            t = mint.matmul(h, a) * pick  # (b, S, K R): only the row's adapter's R columns
            y = y + mint.matmul(t, bb).reshape(y.shape).astype(y.dtype)
        if full:
            d = self.full_delta_cat  # (in, K out)
            if self.compute_dtype is not None:
                d = d.astype(self.compute_dtype)
            k = self.lora_num_adapters
            z = mint.matmul(h, d).reshape(b, -1, k, d.shape[1] // k)  # (b, S, K, out)
            chosen = (self.lora_adapter_ids.reshape(1, 1, -1) == self.lora_rows[:b].reshape(b, 1, 1)).astype(z.dtype)
            y = y + (z * chosen.expand_dims(-1)).sum(2).reshape(y.shape).astype(y.dtype)
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
        from mindspore import Parameter

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
        # lm_head sees only the output rows (the runner projects each sequence's last row): their own indices
        self.out_rows = Parameter(ms.Tensor(np.zeros(max_rows, np.int32)), name="lora_out_rows", requires_grad=False)
        k = len(read)
        for hf in sorted(set(per_layer) | set(saved_layers)):
            cell = linears[hf]
            slots = per_layer.get(hf)
            saved = saved_layers.get(hf)
            cell.__class__ = _multi_class(type(cell), slots is not None, saved is not None)
            cell.lora_rows = self.out_rows if hf == "lm_head" else self.rows
            cell.lora_num_adapters = k
            # which adapter slot (1..K) each stacked column belongs to: R columns per adapter for LoRA
            cell.lora_slot_of = ms.Tensor(np.repeat(np.arange(1, k + 1, dtype=np.int32), rank))
            cell.lora_adapter_ids = ms.Tensor(np.arange(1, k + 1, dtype=np.int32))
            safe = hf.replace(".", "_")
            if slots is not None:
                a_cat = np.zeros((cell.in_features, k * rank), np.float32)
                b_cat = np.zeros((k * rank, cell.out_features), np.float32)
                for slot, (a, b) in slots.items():
                    a_cat[:, (slot - 1) * rank:(slot - 1) * rank + a.shape[0]] = a.T
                    b_cat[(slot - 1) * rank:(slot - 1) * rank + b.shape[1]] = b.T
                cell.lora_a_cat = Parameter(ms.Tensor(a_cat), name=f"{safe}.lora_a_cat", requires_grad=False)
                cell.lora_b_cat = Parameter(ms.Tensor(b_cat), name=f"{safe}.lora_b_cat", requires_grad=False)
            if saved is not None:
                d_cat = np.zeros((cell.in_features, k * cell.out_features), np.float32)
                for slot, d in saved.items():
                    d_cat[:, (slot - 1) * cell.out_features:slot * cell.out_features] = d.T
                cell.full_delta_cat = Parameter(ms.Tensor(d_cat), name=f"{safe}.full_delta_cat", requires_grad=False)
        self.saved_layers = sorted(saved_layers)
        self.layers = sorted(per_layer)
        self._current = self._current_out = None

    def set_rows(self, slots, out_slots=None) -> None:
        """Adapter slot per batch row (0 = base), and per output row (the rows lm_head projects; default:
        the same); the rest of the rows get 0."""
        import mindspore as ms

        out_slots = slots if out_slots is None else out_slots
        for param, values, attr in ((self.rows, slots, "_current"), (self.out_rows, out_slots, "_current_out")):
            full = np.zeros(self.max_rows, np.int32)
            full[:len(values)] = values
            key = full.tobytes()
            if key != getattr(self, attr):
                param.set_data(ms.Tensor(full))
                setattr(self, attr, key)
