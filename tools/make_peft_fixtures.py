"""PEFT <-> mft adapter fixtures, made with PEFT itself (not a CI requirement: run in a venv with torch,
transformers and peft, e.g. /root/.cache/hf-venv).

    python tools/make_peft_fixtures.py
        writes tests/fixtures/peft/llama_lora/: a LoRA adapter PEFT saved for tests/fixtures/hf/llama
        (r 4, q_proj + v_proj, random A and B, modules_to_save [lm_head] with a changed head) and
        reference.npz (ids, PEFT's logits for them); tests/python/test_lora_peft.py loads it into mft.
    python tools/make_peft_fixtures.py --check ADAPTER_DIR OUT.npz
        loads an adapter folder mft saved with PeftModel.from_pretrained onto the same base model and
        writes PEFT's logits for the reference ids, to compare with mft's (the mft -> PEFT direction).
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "tests", "fixtures", "hf", "llama")
OUT = os.path.join(REPO, "tests", "fixtures", "peft", "llama_lora")
IDS = np.array([[1, 5, 9, 33, 2, 100, 7, 311, 42, 8]], np.int64)


def logits_of(model) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(IDS)).logits.float().numpy()


def make() -> None:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    with torch.no_grad():  # a trained head: the saved copy differs from the base's
        head = model.base_model.model.lm_head.modules_to_save["default"].weight
        head.add_(0.05 * torch.randn_like(head))
    model.eval()
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT)
    np.savez(os.path.join(OUT, "reference.npz"), ids=IDS, logits=logits_of(model))
    for name in ("README.md",):  # PEFT writes a model card template; the fixture needs only the adapter files
        if os.path.exists(os.path.join(OUT, name)):
            os.remove(os.path.join(OUT, name))
    print(f"wrote {OUT}: {sorted(os.listdir(OUT))}")


def check(adapter: str, out: str) -> None:
    base = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    np.savez(out, ids=IDS, logits=logits_of(model))
    print(f"PEFT loaded {adapter} ({type(model).__name__}); logits -> {out}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        make()
