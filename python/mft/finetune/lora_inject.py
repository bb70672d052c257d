"""Putting LoRA on a model's linear layers in place (`apply_lora`) and finding them (`lora_layers`).

Every `mft.parallel.layers._Linear` whose module path matches `target_modules` (Hugging Face paths
through the family's hf_mapping) becomes a LoRA linear: its class is swapped for a subclass that adds

    scaling * dropout(x) A^T B^T,   scaling = alpha / r   (alpha / sqrt(r) with use_rslora)

to the base output, with A (r, in) initialised as PEFT does (uniform in +-1/sqrt(in)) and B (out, r)
zeros. Base weights get `requires_grad=False`; `modules_to_save` parameters stay trainable and are
recorded on the model (`lora_saved_params`, HF tensor name -> Parameter) for the adapter file.
"""

from __future__ import annotations

import math

import numpy as np

from mft.errors import MftError
from mft.finetune.lora_settings import LoraSettings, matches


# ---- the layer ----------------------------------------------------------
_LORA_CLASSES: dict = {}


def _lora_class(base_cls):
    """A subclass of `base_cls` (a _Linear) that adds the low-rank path."""
    if base_cls in _LORA_CLASSES:
        return _LORA_CLASSES[base_cls]
    from mindspore import ops

    def construct(self, x):
        y = base_cls.construct(self, x)
        a = self.lora_A.weight
        b = self.lora_B.weight
        h = x
        if self.compute_dtype is not None:
            h = h.astype(self.compute_dtype)
            a = a.astype(self.compute_dtype)
            b = b.astype(self.compute_dtype)
        if self.lora_dropout is not None:
            h = self.lora_dropout(h)
        shape = h.shape
        low = self._lora_mm(h.reshape(-1, shape[-1]), a)
        delta = self._lora_mm(low, b) * self.lora_scaling
        return y + delta.reshape(shape[:-1] + (self.out_features,)).astype(y.dtype)

    cls = type(f"Lora{base_cls.__name__}", (base_cls,), {"construct": construct, "__module__": __name__})
    _LORA_CLASSES[base_cls] = cls
    return cls


_WEIGHT_CELL = []


def _weight_cell(array: np.ndarray, name: str):
    """A one-parameter Cell (so parameter paths read `<path>.lora_A.weight`); one class for all."""
    if not _WEIGHT_CELL:
        from mindspore import nn

        class LoraWeight(nn.Cell):
            def __init__(self, value, pname):
                super().__init__()
                import mindspore as ms
                from mindspore import Parameter

                self.weight = Parameter(ms.Tensor(value), name=pname)

        _WEIGHT_CELL.append(LoraWeight)
    return _WEIGHT_CELL[0](array, name)


def _kaiming_uniform_a(r: int, in_features: int, rng: np.random.Generator) -> np.ndarray:
    bound = 1.0 / math.sqrt(in_features)  # gain sqrt(2/(1+5)) * sqrt(3/fan_in)
    return rng.uniform(-bound, bound, size=(r, in_features)).astype(np.float32)


def lora_layers(model) -> dict:
    """mft cell path -> LoRA layer."""
    return {name: cell for name, cell in model.cells_and_names() if getattr(cell, "is_lora", False)}


def apply_lora(model, settings: LoraSettings, seed: int = 0, hf_paths: bool = True) -> list[str]:
    """Adds LoRA to every matching linear (in place), freezes all base parameters;
    returns the HF module paths that got an adapter. Matching uses HF module
    paths (as PEFT sees the transformers model) when the model has an
    hf_mapping, else mft's cell paths."""
    import mindspore as ms
    from mindspore import nn, ops

    from mft.parallel.layers import _Linear

    if lora_layers(model):
        raise MftError("the model already has LoRA layers")
    to_hf = _path_mapper(model) if hf_paths else (lambda p: p)
    rng = np.random.default_rng(seed)
    chosen = []
    for path, cell in list(model.cells_and_names()):
        hf = to_hf(path)
        if not path or not matches(hf, settings.target_modules):
            continue
        if not isinstance(cell, _Linear):
            if isinstance(settings.target_modules, list) and any(hf.endswith(t) for t in settings.target_modules) and list(cell.cells()):
                continue  # a container whose name happens to match; PEFT also skips non-leaf matches it cannot wrap
            raise MftError(f"lora target_modules matches {hf}, a {type(cell).__name__}; only linear layers take LoRA")
        chosen.append((path, hf, cell))
    if not chosen:
        raise MftError(f"lora target_modules {settings.target_modules!r} match no linear layer of {type(model).__name__}")
    saved = _modules_to_save(model, settings.modules_to_save, to_hf, {path for path, _, _ in chosen}) if settings.modules_to_save else {}
    for p in model.get_parameters():
        p.requires_grad = False
    for p in saved.values():
        p.requires_grad = True
    model.lora_saved_params = saved
    for path, hf, cell in chosen:
        a = _kaiming_uniform_a(settings.r, cell.in_features, rng)
        b = np.zeros((cell.out_features, settings.r), np.float32)
        cell.__class__ = _lora_class(type(cell))
        cell.is_lora = True
        cell.lora_hf_path = hf
        cell.lora_r = settings.r
        cell.lora_scaling = float(settings.scaling)
        cell._lora_mm = ops.MatMul(transpose_b=True)
        cell.lora_A = _weight_cell(a, f"{path}.lora_A.weight")
        cell.lora_B = _weight_cell(b, f"{path}.lora_B.weight")
        cell.lora_A.weight.name = f"{path}.lora_A.weight"
        cell.lora_B.weight.name = f"{path}.lora_B.weight"
        cell.lora_dropout = nn.Dropout(p=float(settings.dropout)) if settings.dropout > 0 else None
    model.lora_settings = settings
    return [hf for _, hf, _ in chosen]


def _modules_to_save(model, names: list[str], to_hf, adapted: set) -> dict:
    """HF tensor name -> parameter of every module whose HF path ends in one of `names` (PEFT's rule)."""
    cells = []
    for path, cell in model.cells_and_names():
        hf = to_hf(path)
        if path and any(hf.endswith(n) for n in names):
            if path in adapted:
                raise MftError(f"lora: {hf} is in both target_modules and modules_to_save")
            cells.append((path, hf, cell))
    if not cells:
        hint = ""
        if "lm_head" in names and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            hint = " (this model ties lm_head to model.embed_tokens, tie_word_embeddings: name embed_tokens to train both)"
        raise MftError(f"lora modules_to_save {names!r} match no module of {type(model).__name__}{hint}")
    wanted = {id(p) for _, _, cell in cells for p in cell.get_parameters()}
    mapping = getattr(model, "hf_mapping", None)
    declared = mapping.expected_shapes(model.config) if mapping is not None and hasattr(mapping, "expected_shapes") else None
    out = {}
    if hasattr(model, "hf_layout"):
        layout = model.hf_layout()
    else:
        layout = {name: (p, None) for name, p in model.parameters_and_names()}
    for hf_name, (p, expert) in layout.items():
        if id(p) not in wanted:
            continue
        if expert is not None:
            raise MftError(f"lora modules_to_save: {hf_name} is part of a stacked expert tensor; experts cannot be saved whole yet")
        if declared is not None and tuple(declared.get(hf_name, ())) != tuple(p.shape):
            raise MftError(f"lora modules_to_save: {hf_name} is held as a piece {tuple(p.shape)} of {declared.get(hf_name)} "
                           "(tensor parallelism); modules_to_save needs parallel.tp=1")
        out[hf_name] = p
    return out


def _path_mapper(model):
    mapping = getattr(model, "hf_mapping", None)
    if mapping is None:
        return lambda p: p
    needs_cfg = getattr(model, "hf_mapping_needs_config", False)

    def to_hf(path: str) -> str:
        if not path:
            return path
        name = path + ".weight"
        hf = mapping.param_to_hf_name(name, model.config) if needs_cfg else mapping.param_to_hf_name(name)
        return hf[: -len(".weight")] if hf.endswith(".weight") else path

    return to_hf
