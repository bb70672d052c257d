"""`mft weights merge-lora BASE ADAPTER OUT`: fold a PEFT LoRA adapter into a plain Hugging Face folder."""

from __future__ import annotations

import argparse
import os
import shutil

from mft.errors import MftError

COPIED = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def add_merge_lora_parser(wsub) -> None:
    p = wsub.add_parser(
        "merge-lora",
        help="merge a PEFT LoRA adapter into a base model, writing a normal Hugging Face folder",
        description="W' = W + (lora_alpha / r) * B @ A for every module of ADAPTER (adapter_config.json + "
        "adapter_model.safetensors, PEFT's layout); OUT gets config.json, model.safetensors and the base's tokenizer files.",
    )
    p.add_argument("base", help="Hugging Face model folder")
    p.add_argument("adapter", help="PEFT LoRA adapter folder")
    p.add_argument("out", help="new folder for the merged model")
    p.set_defaults(func=run_merge_lora)


def merge_lora_folder(base: str, adapter: str, out: str) -> int:
    """Writes the merged folder; returns how many modules were merged."""
    from mft.finetune.lora import merge_into_state_dict, read_adapter, ADAPTER_WEIGHTS
    from mft.models import checkpoint_io

    if os.path.abspath(out) in (os.path.abspath(base), os.path.abspath(adapter)):
        raise MftError(f"{out}: the output folder must differ from the base and adapter folders")
    config = checkpoint_io.read_config(base)
    settings, tensors = read_adapter(adapter)
    weights, _ = checkpoint_io.read_weights(base)
    merged = merge_into_state_dict(weights, settings, tensors, os.path.join(adapter, ADAPTER_WEIGHTS))
    os.makedirs(out, exist_ok=True)
    for name in COPIED:
        src = os.path.join(base, name)
        if os.path.isfile(src) and name != "generation_config.json":
            shutil.copyfile(src, os.path.join(out, name))
    generation = None
    gen_path = os.path.join(base, "generation_config.json")
    if os.path.isfile(gen_path):
        import json

        with open(gen_path, encoding="utf-8") as f:
            generation = json.load(f)
    checkpoint_io.write_pretrained(out, config, merged, generation)
    return sum(k.endswith(".lora_A.weight") for k in tensors)  # modules_to_save tensors are copied, not merged


def run_merge_lora(args: argparse.Namespace) -> int:
    n = merge_lora_folder(args.base, args.adapter, args.out)
    print(f"merged {n} LoRA modules of {args.adapter} into {args.base} -> {args.out}")
    return 0
