"""Which parts of a vision-language model train (finetune.vision_tower / projector / language_model).

The parameters fall in three groups by name: the vision tower
(`model.vision_tower.*` for LLaVA, `visual.*` but its merger for
Qwen2.5-VL), the projector (`model.multi_modal_projector.*`,
`visual.merger.*`) and the language model (everything else: embeddings,
decoder layers, norm, lm_head). A frozen group's parameters get
requires_grad=False before the optimizer is built, so they are neither
updated nor given optimizer state.

- Pre-alignment (LLaVA stage 1): language_model: frozen, vision_tower:
  frozen (default), projector: trainable (default) -> only the projector trains.
- LoRA (finetune.method: lora) on a VLM targets the language model's linears
  only; with language_model: trainable only its adapters train (the base
  stays frozen), and the projector / vision tower train as their keys say.
"""

from __future__ import annotations

import re

from mft.errors import MftError

KEYS = ("vision_tower", "projector", "language_model")
DEFAULTS = {"vision_tower": "frozen", "projector": "trainable", "language_model": "trainable"}


def is_vlm(model) -> bool:
    """True when the model has a vision tower (LLaVA's model.vision_tower or Qwen2.5-VL's visual)."""
    return any(n.startswith(("model.vision_tower.", "visual.")) for n, _ in model.parameters_and_names())


def group_of(name: str) -> str:
    """The finetune part a parameter belongs to: vision_tower, projector or language_model."""
    if name.startswith(("model.multi_modal_projector.", "visual.merger.")):
        return "projector"
    if name.startswith(("model.vision_tower.", "visual.")):
        return "vision_tower"
    return "language_model"


def check_keys(cfg, model) -> None:
    """On a text-only model every key must keep its default (nothing to freeze there)."""
    if is_vlm(model):
        return
    for key in KEYS:
        if getattr(cfg.finetune, key) != DEFAULTS[key]:
            raise MftError(f"finetune.{key}={getattr(cfg.finetune, key)}: only vision-language models (llava, qwen2_5_vl) "
                           f"have a {key.replace('_', ' ')} to choose; {cfg.model.arch} is text-only")


def lora_targets(model, target_modules):
    """On a VLM, LoRA goes to the language model's linears only: a list of names becomes a regex
    over language-model paths (a regex given by the user is used as written)."""
    if not is_vlm(model) or isinstance(target_modules, str):
        return target_modules
    names = "|".join(re.escape(t) for t in target_modules)
    return rf"(?!.*(?:vision_tower|visual|multi_modal_projector)).*(?:^|\.)(?:{names})"


def apply_freeze(cfg, model, lora: bool) -> dict:
    """Sets requires_grad per group; returns {group: trainable parameter count}."""
    check_keys(cfg, model)
    if not is_vlm(model):
        return {}
    wanted = {k: getattr(cfg.finetune, k) == "trainable" for k in KEYS}
    if not any(wanted.values()):
        raise MftError("finetune.vision_tower, finetune.projector and finetune.language_model are all frozen: nothing would train")
    counts = dict.fromkeys(KEYS, 0)
    for name, p in model.parameters_and_names():
        group = group_of(name)
        if ".lora_" in name:  # LoRA adapters live in the language model; they train with it
            p.requires_grad = wanted["language_model"]
        elif lora and group == "language_model":
            p.requires_grad = False  # LoRA: the base weights stay frozen
        else:
            p.requires_grad = wanted[group]
        if p.requires_grad:
            counts[group] += int(p.size)
    return counts
