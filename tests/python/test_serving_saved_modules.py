"""`mft serve --adapter` with a PEFT adapter that has modules_to_save.

tests/fixtures/peft/llama_lora (saved by PEFT itself) trains lm_head in full next to r-4 LoRA on
q_proj/v_proj. The engine serves it per request: the saved head is a whole-weight delta on the base
head for that adapter's rows. Saved modules that are not linear weights are refused naming the file
and the key.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.serving.engine import LLMEngine
from mft.serving.sampling import SamplingOptions

ms.set_device("CPU")
ms.runtime.launch_blocking()
HERE = os.path.dirname(__file__)
LLAMA = os.path.join(HERE, "..", "fixtures", "hf", "llama")
PEFT = os.path.join(HERE, "..", "fixtures", "peft", "llama_lora")


def greedy(n):
    return SamplingOptions(max_tokens=n, temperature=0.0, ignore_eos=True)


def test_adapter_with_saved_lm_head_served_per_request_equals_peft_model():
    ref = np.load(os.path.join(PEFT, "reference.npz"))
    prompt = ref["ids"][0].astype(int).tolist()
    adapted = AutoModelForCausalLM.from_pretrained(LLAMA, adapter=PEFT)  # mft's PEFT load (== PEFT's logits, test_lora_peft)
    want_adapter = adapted.generate([prompt], max_new_tokens=6)[0, len(prompt):].tolist()
    base_model = AutoModelForCausalLM.from_pretrained(LLAMA)
    want_base = base_model.generate([prompt], max_new_tokens=6)[0, len(prompt):].tolist()
    assert want_adapter != want_base  # the adapter (and its head) changes the answer

    engine = LLMEngine(AutoModelForCausalLM.from_pretrained(LLAMA), block_size=8, max_num_seqs=4, max_model_len=64,
                       adapters=[("peft", PEFT)])
    assert engine.lora.saved_layers == ["lm_head"]
    # The same prompt for the adapter and the base in the same steps (one prefill call, one decode batch).
    a = engine.add_request(prompt, greedy(6), adapter=1)
    b = engine.add_request(prompt, greedy(6))
    while engine.has_work():
        engine.step()
    assert a.seqs[0].output == want_adapter
    assert b.seqs[0].output == want_base
    # both prefilled as rows of one compiled step, one adapter index per token row and per output row
    assert engine.runner.rows_prefill and not engine.runner.prefill_seen
    # The prefill logits of the adapter's row equal PEFT's own last-position logits.
    engine.lora.set_rows([1])
    logits = engine.runner.prefill_rows([(prompt, [], [0] * len(prompt))], False)[0]  # writes to the scratch block
    np.testing.assert_allclose(logits[0], ref["logits"][0, -1], atol=1e-4, rtol=0)


def test_adapter_saving_a_norm_is_refused_naming_file_and_key(tmp_path):
    from mft.finetune.lora import LoraSettings, apply_lora, save_adapter

    model = AutoModelForCausalLM.from_pretrained(LLAMA)
    apply_lora(model, LoraSettings(r=2, alpha=4, target_modules=["q_proj"], modules_to_save=["model.norm"]))
    save_adapter(model, str(tmp_path / "ad"), LLAMA)
    with pytest.raises(MftError) as err:
        LLMEngine(AutoModelForCausalLM.from_pretrained(LLAMA), block_size=8, max_num_seqs=2, max_model_len=32,
                  adapters=[("normed", str(tmp_path / "ad"))])
    message = str(err.value)
    assert os.path.join(str(tmp_path / "ad"), "adapter_model.safetensors") in message
    assert "base_model.model.model.norm.weight" in message and "merge-lora" in message
