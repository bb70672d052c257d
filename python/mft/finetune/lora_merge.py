"""Folding LoRA into base weights: W + scaling * B @ A, in a Hugging Face state dict or in a live model."""

from __future__ import annotations

import re

import numpy as np

from mft.errors import MftError
from mft.finetune.lora_inject import lora_layers
from mft.finetune.lora_peft import KEY_PREFIX
from mft.finetune.lora_settings import LoraSettings


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
