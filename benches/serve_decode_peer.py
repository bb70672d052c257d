"""MindFormers' side of benches/serve_decode.py; runs in the peer's venv (no mft import).

Greedy decoding with MindFormers 2.0's legacy LlamaForCausalLM in graph mode on CPU. Its KV cache
(use_past=True) does not run on the CPU backend and `generate()` stops at an ArgMaxExt kernel the CPU
backend lacks, so each new token recomputes the whole sequence, padded to seq_length (what its generate
does without a cache), and the next id is numpy's argmax of the last real position's logits.
Prints one JSON line: per-token seconds after the first (compile) call.
"""

import argparse
import json
import time

import numpy as np

ap = argparse.ArgumentParser()
for name, default in dict(hidden=128, layers=2, heads=4, kv_heads=4, intermediate=512, vocab=1000, seq=128,
                          prompt=16, tokens=64).items():
    ap.add_argument("--" + name.replace("_", "-"), type=int, default=default)
a = ap.parse_args()

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")
ms.set_seed(0)
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

cfg = LlamaConfig(batch_size=1, seq_length=a.seq, hidden_size=a.hidden, num_layers=a.layers, num_heads=a.heads,
                  n_kv_heads=a.kv_heads, vocab_size=a.vocab, intermediate_size=a.intermediate, compute_dtype="float32",
                  param_init_type="float32", layernorm_compute_type="float32", softmax_compute_type="float32",
                  rotary_dtype="float32", use_flash_attention=False, use_past=False, use_rope_slice=True,
                  fused_rms_norm=False, qkv_concat=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
model = LlamaForCausalLM(cfg)
model.set_train(False)
ids = np.random.default_rng(0).integers(3, a.vocab, a.prompt).tolist()
buf = np.zeros((1, a.seq), np.int32)
times = []
for _ in range(a.tokens + 1):  # the first call compiles
    buf[0, :len(ids)] = ids
    t = time.perf_counter()
    logits = model(ms.Tensor(buf))[0].asnumpy().reshape(a.seq, -1)
    ids.append(int(np.argmax(logits[len(ids) - 1])))
    times.append(time.perf_counter() - t)
print(json.dumps({"token_s": times[1:], "params": int(sum(np.prod(p.shape) for p in model.trainable_params()))}))
