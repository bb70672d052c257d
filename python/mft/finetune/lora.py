"""LoRA on mft's linear layers, with adapters in PEFT's file layout.

`apply_lora(model, LoraSettings(r, alpha, dropout, target_modules))` turns
every `mft.parallel.layers._Linear` whose module path matches
`target_modules` into a LoRA linear in place:

    y = x W^T (+ b) + scaling * dropout(x) A^T B^T,   scaling = alpha / r
                                                      (alpha / sqrt(r) with use_rslora)

A is (r, in), initialised as PEFT does (torch's kaiming_uniform with
a = sqrt(5): uniform in +-1/sqrt(in)); B is (out, r), zeros, so a fresh
adapter leaves the model's outputs unchanged. The base weights get
`requires_grad=False`; only A and B train. The layer keeps its class (a
subclass of it is swapped in) and its `weight`/`bias` parameters, so the
model's Hugging Face names and `compute_dtype` mixed precision work as
before; A and B compute in the same dtype.

`target_modules` as PEFT reads it: a list of names, each matching a module
path equal to it or ending in `.<name>`; or one string, a regex that must
match the whole path.

Files (PEFT's layout, loadable by `PeftModel.from_pretrained`):
`adapter_config.json` (peft_type LORA, r, lora_alpha, lora_dropout,
target_modules, base_model_name_or_path, task_type CAUSAL_LM, ...) and
`adapter_model.safetensors` with keys
`base_model.model.<HF module path>.lora_A.weight` (r, in) and
`.lora_B.weight` (out, r). Module paths are the Hugging Face ones (the
family's hf_mapping turns them into mft cells).

`modules_to_save` (PEFT's field): modules trained in full next to the
adapters (lm_head, embed_tokens, ...), matched as PEFT does (a module path
ending in the name). Their parameters stay trainable and are saved in the
adapter file under `base_model.model.<HF tensor name>` (PEFT's saved form:
PEFT keeps a trained copy in a `modules_to_save.default` wrapper and strips
that from the keys when it saves); loading puts them back, merging writes
them over the base tensors.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from mft.errors import MftError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: list(DEFAULT_TARGETS))
    use_rslora: bool = False
    modules_to_save: list[str] | None = None

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise MftError(f"lora r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise MftError(f"lora alpha must be positive, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise MftError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as e:
                raise MftError(f"lora target_modules regex {self.target_modules!r} does not compile: {e}") from None
        elif not (isinstance(self.target_modules, (list, tuple)) and self.target_modules
                  and all(isinstance(t, str) and t for t in self.target_modules)):
            raise MftError(f"lora target_modules must be a non-empty list of names or one regex string, got {self.target_modules!r}")
        else:
            self.target_modules = list(self.target_modules)
        if self.modules_to_save is not None:
            if not (isinstance(self.modules_to_save, (list, tuple)) and all(isinstance(t, str) and t for t in self.modules_to_save)):
                raise MftError(f"lora modules_to_save must be a list of module names, got {self.modules_to_save!r}")
            self.modules_to_save = list(self.modules_to_save) or None

    @property
    def scaling(self) -> float:
        """The factor of the low-rank update: alpha / r, or alpha / sqrt(r) with use_rslora."""
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


def matches(path: str, target_modules) -> bool:
    """PEFT's rule: a regex string must match the whole path; a list entry matches the path or its last parts."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, path) is not None
    return any(path == t or path.endswith("." + t) for t in target_modules)


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


# ---- state ----------------------------------------------------------------
def adapter_state_dict(model) -> dict[str, np.ndarray]:
    """PEFT keys -> float32 arrays."""
    out = {}
    for _, cell in lora_layers(model).items():
        out[f"{KEY_PREFIX}{cell.lora_hf_path}.lora_A.weight"] = cell.lora_A.weight.asnumpy().astype(np.float32)
        out[f"{KEY_PREFIX}{cell.lora_hf_path}.lora_B.weight"] = cell.lora_B.weight.asnumpy().astype(np.float32)
    for hf_name, p in getattr(model, "lora_saved_params", {}).items():
        out[f"{KEY_PREFIX}{hf_name}"] = p.asnumpy().astype(np.float32)
    return out


def adapter_config(settings: LoraSettings, base_model: str | None) -> dict:
    """adapter_config.json with the fields PEFT's LoraConfig reads."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": settings.r,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": settings.target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": settings.use_rslora,
        "use_dora": False,
        "modules_to_save": settings.modules_to_save,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": None,
        "auto_mapping": None,
    }


def save_adapter(model, folder: str, base_model: str | None = None) -> None:
    """adapter_model.safetensors then adapter_config.json (a folder with the config has its weights)."""
    from mft.models.checkpoint_io import write_json_atomic
    from mft.weights.safetensors import save_file

    settings = getattr(model, "lora_settings", None)
    if settings is None:
        raise MftError("the model has no LoRA layers to save")
    os.makedirs(folder, exist_ok=True)
    save_file(adapter_state_dict(model), os.path.join(folder, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_json_atomic(os.path.join(folder, ADAPTER_CONFIG), adapter_config(settings, base_model))


def read_adapter(folder: str) -> tuple[LoraSettings, dict[str, np.ndarray]]:
    """Settings and PEFT-keyed tensors of an adapter folder, checked."""
    from mft.weights.safetensors import load_file

    cfg_path = os.path.join(folder, ADAPTER_CONFIG)
    if not os.path.isfile(cfg_path):
        raise MftError(f"{folder}: no {ADAPTER_CONFIG} (not a PEFT adapter folder)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise MftError(f"{cfg_path}: cannot read: {e}") from None
    if not isinstance(cfg, dict):
        raise MftError(f"{cfg_path}: expected a JSON object")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise MftError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not supported (only LORA)")
    unsupported = [(k, cfg.get(k)) for k, v in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none"))
                   if cfg.get(k, v) != v]
    unsupported += [(k, cfg[k]) for k in ("rank_pattern", "alpha_pattern") if cfg.get(k)]
    unsupported += [(k, cfg[k]) for k in ("layers_to_transform", "trainable_token_indices", "target_parameters") if cfg.get(k)]
    if unsupported:
        raise MftError(f"{cfg_path}: unsupported LoRA options {', '.join(f'{k}={v!r}' for k, v in unsupported)}")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in cfg:
            raise MftError(f"{cfg_path}: missing {key!r}")
    try:
        settings = LoraSettings(r=cfg["r"], alpha=cfg["lora_alpha"], dropout=cfg.get("lora_dropout") or 0.0,
                                target_modules=cfg["target_modules"], use_rslora=bool(cfg.get("use_rslora", False)),
                                modules_to_save=cfg.get("modules_to_save") or None)
    except MftError as e:
        raise MftError(f"{cfg_path}: {e}") from None
    weights = os.path.join(folder, ADAPTER_WEIGHTS)
    if not os.path.isfile(weights):
        raise MftError(f"{folder}: no {ADAPTER_WEIGHTS}")
    tensors = load_file(weights)
    # PEFT may keep the adapter name in keys (".lora_A.default.weight") in some versions; accept both.
    tensors = {re.sub(r"\.(lora_[AB])\.default\.weight$", r".\1.weight", k): v for k, v in tensors.items()}
    # A modules_to_save copy as PEFT holds it in memory (".modules_to_save.default."); saved files have it stripped.
    tensors = {k.replace(".modules_to_save.default.", "."): v for k, v in tensors.items()}
    return settings, tensors


def load_adapter_weights(model, tensors: dict[str, np.ndarray], source: str) -> None:
    """Sets every LoRA layer's A and B from PEFT-keyed tensors; all must be present with the right shapes."""
    import mindspore as ms

    problems = []
    expected = set()
    for _, cell in lora_layers(model).items():
        for part, shape in (("lora_A", (cell.lora_r, cell.in_features)), ("lora_B", (cell.out_features, cell.lora_r))):
            key = f"{KEY_PREFIX}{cell.lora_hf_path}.{part}.weight"
            expected.add(key)
            if key not in tensors:
                problems.append(f"missing {key}")
            elif tuple(tensors[key].shape) != shape:
                problems.append(f"{key} has shape {tuple(tensors[key].shape)}, expected {shape}")
    saved = getattr(model, "lora_saved_params", {})
    for hf_name, p in saved.items():
        key = KEY_PREFIX + hf_name
        expected.add(key)
        if key not in tensors:
            problems.append(f"missing {key} (modules_to_save)")
        elif tuple(tensors[key].shape) != tuple(p.shape):
            problems.append(f"{key} has shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}")
    problems += [f"unexpected {k}" for k in sorted(set(tensors) - expected)]
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise MftError(f"{source}: does not fit the model: " + "; ".join(problems[:6]) + more)
    for _, cell in lora_layers(model).items():
        for part in ("lora_A", "lora_B"):
            arr = tensors[f"{KEY_PREFIX}{cell.lora_hf_path}.{part}.weight"]
            getattr(cell, part).weight.set_data(ms.Tensor(np.ascontiguousarray(arr, dtype=np.float32)))
    for hf_name, p in saved.items():
        p.set_data(ms.Tensor(np.ascontiguousarray(tensors[KEY_PREFIX + hf_name], dtype=np.float32)).astype(p.dtype))


def load_adapter(model, folder: str) -> list[str]:
    """Applies the PEFT adapter in `folder` to `model` (in place); returns the adapted HF module paths."""
    settings, tensors = read_adapter(folder)
    paths = apply_lora(model, settings)
    load_adapter_weights(model, tensors, os.path.join(folder, ADAPTER_WEIGHTS))
    return paths


# ---- merging -------------------------------------------------------------
def merge_into_state_dict(base: dict[str, np.ndarray], settings: LoraSettings, tensors: dict[str, np.ndarray],
                          source: str = "adapter") -> dict[str, np.ndarray]:
    """HF state dict with W + scaling * B @ A for every adapted module (a zero B leaves W's bytes as they are)
    and the modules_to_save tensors in place of the base ones."""
    out = dict(base)
    pairs = {}
    for key in tensors:
        m = re.fullmatch(re.escape(KEY_PREFIX) + r"(.+)\.(lora_[AB])\.weight", key)
        if m is None:
            name = key[len(KEY_PREFIX):] if key.startswith(KEY_PREFIX) else None
            if name is None or not settings.modules_to_save or not any(name.rsplit(".", 1)[0].endswith(n) for n in settings.modules_to_save):
                raise MftError(f"{source}: unexpected tensor {key} (PEFT LoRA keys are base_model.model.<module>.lora_A/B.weight, "
                               "or base_model.model.<tensor> of a module in modules_to_save)")
            if name not in base:
                raise MftError(f"{source}: {key} (modules_to_save), but the base model has no tensor {name}")
            if tuple(tensors[key].shape) != tuple(base[name].shape):
                raise MftError(f"{source}: {key} has shape {tuple(tensors[key].shape)}, the base tensor {tuple(base[name].shape)}")
            out[name] = np.asarray(tensors[key]).astype(base[name].dtype)
            continue
        pairs.setdefault(m.group(1), {})[m.group(2)] = tensors[key]
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise MftError(f"{source}: {module} has only {', '.join(ab)}")
        name = module + ".weight"
        if name not in base:
            raise MftError(f"{source}: adapter for {module}, but the base model has no tensor {name}")
        w = base[name]
        a, b = ab["lora_A"].astype(np.float64), ab["lora_B"].astype(np.float64)
        if a.shape != (settings.r, w.shape[1]) or b.shape != (w.shape[0], settings.r):
            raise MftError(f"{source}: {module} lora_A {a.shape} / lora_B {b.shape} do not fit weight {w.shape} with r={settings.r}")
        if not np.any(b) or not np.any(a):
            continue
        out[name] = (w.astype(np.float64) + settings.scaling * (b @ a)).astype(w.dtype)
    return out


def merge_lora(model) -> None:
    """Folds every LoRA layer into its base weight and zeroes its B (outputs unchanged)."""
    import mindspore as ms

    for _, cell in lora_layers(model).items():
        a = cell.lora_A.weight.asnumpy().astype(np.float64)
        b = cell.lora_B.weight.asnumpy().astype(np.float64)
        w = cell.weight
        merged = w.asnumpy().astype(np.float64) + cell.lora_scaling * (b @ a)
        w.set_data(ms.Tensor(merged.astype(np.float32)).astype(w.dtype))
        cell.lora_B.weight.set_data(ms.Tensor(np.zeros(b.shape, np.float32)))
