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

Code, one job per module (this module re-exports their public names):
`lora_settings.py` (LoraSettings, matches), `lora_inject.py` (apply_lora,
lora_layers), `lora_peft.py` (the files: save_adapter, read_adapter,
load_adapter, ...), `lora_merge.py` (merge_into_state_dict, merge_lora).
"""

from __future__ import annotations

from mft.finetune.lora_inject import _path_mapper, apply_lora, lora_layers  # noqa: F401  (_path_mapper: serving)
from mft.finetune.lora_merge import merge_into_state_dict, merge_lora
from mft.finetune.lora_peft import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, KEY_PREFIX, adapter_config, adapter_state_dict,
                                    load_adapter, load_adapter_weights, read_adapter, save_adapter)
from mft.finetune.lora_settings import DEFAULT_TARGETS, LoraSettings, matches

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "DEFAULT_TARGETS", "KEY_PREFIX", "LoraSettings", "adapter_config",
    "adapter_state_dict", "apply_lora", "load_adapter", "load_adapter_weights", "lora_layers", "matches",
    "merge_into_state_dict", "merge_lora", "read_adapter", "save_adapter",
]  # fmt: skip
