"""LoRA adapters in PEFT's file layout: state dict, adapter_config.json, save, read (checked) and load.

Files (loadable by `PeftModel.from_pretrained`): `adapter_config.json` (peft_type LORA, r, lora_alpha,
lora_dropout, target_modules, base_model_name_or_path, task_type CAUSAL_LM, ...) and
`adapter_model.safetensors` with keys `base_model.model.<HF module path>.lora_A.weight` (r, in) and
`.lora_B.weight` (out, r), plus `base_model.model.<HF tensor name>` for each modules_to_save tensor.
"""

from __future__ import annotations

import os
import re

import numpy as np

from mft.errors import MftError
from mft.finetune.lora_inject import apply_lora, lora_layers
from mft.finetune.lora_settings import LoraSettings
from mft.json_files import read_json_object

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."


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
    from mft.json_files import write_json_atomic
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
    cfg = read_json_object(cfg_path)
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
