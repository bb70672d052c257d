"""AutoModelForCausalLM: pick the family from config.json and build/load it.

Families register here by module path; each family module exposes
MODEL_TYPE, ARCHITECTURES, CONFIG_CLASS and MODEL_CLASS.
"""

from __future__ import annotations

import importlib

import mindspore as ms

from mft.errors import MftError

# model_type -> module implementing that family.
FAMILIES = {
    "llama": "mft.models.llama",
    "mistral": "mft.models.mistral",  # Llama's math; sliding_window must be null
    "qwen2": "mft.models.qwen2",
    "qwen3": "mft.models.qwen3",
    "mixtral": "mft.models.mixtral",
    "qwen3_moe": "mft.models.qwen3_moe",
    "deepseek_v3": "mft.models.deepseek_v3",
    "llava": "mft.models.llava",  # vision-language: CLIP tower + projector + a text family above
    "qwen2_5_vl": "mft.models.qwen2_5_vl",  # vision-language: windowed ViT + merger, Qwen2 with M-RoPE
}


def _family(name: str):
    return importlib.import_module(FAMILIES[name])


def _supported() -> str:
    archs = []
    for name in FAMILIES:
        archs.extend(_family(name).ARCHITECTURES)
    return f"supported model_type: {', '.join(sorted(FAMILIES))}; architectures: {', '.join(sorted(archs))}"


def family_for_config(raw: dict, source: str):
    """The model family module for a config.json dict: by its architectures, else its model_type; MftError naming `source` otherwise."""
    for arch in raw.get("architectures") or []:
        for name in FAMILIES:
            if arch in _family(name).ARCHITECTURES:
                return _family(name)
    model_type = raw.get("model_type")
    if model_type in FAMILIES:
        return _family(model_type)
    what = f"architectures={raw.get('architectures')!r}, model_type={model_type!r}"
    raise MftError(f"{source}: unsupported model ({what}); {_supported()}")


def load_processor(folder: str, config, tokenizer=None):
    """The prompt + images processor of a vision-language model folder (family's PROCESSOR_CLASS)."""
    family = family_for_config({"model_type": config.model_type}, f"{folder}/config.json")
    processor_class = getattr(family, "PROCESSOR_CLASS", None)
    if processor_class is None:
        vlm = sorted(name for name in FAMILIES if hasattr(_family(name), "PROCESSOR_CLASS"))
        raise MftError(f"{folder}: a {config.model_type} model reads no images (vision-language families: {', '.join(vlm)})")
    return processor_class.from_pretrained(folder, config, tokenizer=tokenizer)


class AutoModelForCausalLM:
    """Not instantiated: use `from_pretrained(dir)` or `from_config(cfg)`."""

    def __init__(self):
        raise TypeError("use AutoModelForCausalLM.from_pretrained(dir) or .from_config(config)")

    @staticmethod
    def from_pretrained(folder: str, dtype=ms.float32, adapter: str | None = None, **overrides):
        """`adapter`: a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) applied at load."""
        from mft.models import checkpoint_io

        raw = checkpoint_io.read_config(folder)
        family = family_for_config(raw, f"{folder}/config.json")
        model = family.MODEL_CLASS.from_pretrained(folder, dtype=dtype, **overrides)
        if adapter is not None:
            from mft.finetune.lora import load_adapter

            load_adapter(model, adapter)
        return model

    @staticmethod
    def from_config(config, dtype=ms.float32, **overrides):
        """`config` is a family config object, or an HF config dict (as in config.json)."""
        if isinstance(config, dict):
            family = family_for_config(config, "config")
            config = family.CONFIG_CLASS.from_hf_dict(config, source="config")
            return family.MODEL_CLASS.from_config(config, dtype=dtype, **overrides)
        for name in FAMILIES:
            family = _family(name)
            if isinstance(config, family.CONFIG_CLASS):
                return family.MODEL_CLASS.from_config(config, dtype=dtype, **overrides)
        raise MftError(f"from_config: {type(config).__name__} is not a known model config; {_supported()}")
