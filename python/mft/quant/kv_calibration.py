"""Static int8 KV-cache scales (`--scheme kv8`): one scale per (layer, kv head)
for keys and one for values, s = max |x| / 127 over the calibration tokens.

Keys are measured as the cache stores them: after k_norm (Qwen3) and RoPE.
The float model runs each calibration sequence once with a KV cache
(`forward_step`), and the returned caches are the keys/values every position
wrote. Written as `<attention prefix>.k_scale` / `.v_scale`, shape
(kv_heads, 1, 1) float32: compressed-tensors' `kv_cache_scheme` with
strategy "attn_head" (mft.quant.writer).
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError

QMAX = 127.0
MIN_SCALE = 1e-8  # a head that only ever saw zeros still gets a usable (tiny) scale


def kv_attention_layers(model, option: str = "--scheme kv8") -> list[tuple[str, object]]:
    """[(HF prefix of the attention block, Attention cell)] per layer; MftError naming the option when the
    model's cache cannot be int8 (MLA, vision-language wrappers, tensor parallel)."""
    from mft.models.common.attention import Attention
    from mft.models.common.decoder import DecoderForCausalLM
    from mft.quant.targets import hf_name_of

    if not isinstance(model, DecoderForCausalLM):
        raise MftError(f"{option}: {type(model).__name__} is not a text decoder mft can give an int8 KV cache "
                       "(vision-language models keep a float cache)")
    out = []
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        if type(attn) is not Attention:
            raise MftError(f"{option}: layer {i} uses {type(attn).__name__} (e.g. DeepSeek MLA's latent cache), "
                           "not the multi-head/GQA attention whose KV cache mft stores as int8")
        if getattr(attn.k_proj, "tp_size", 1) > 1:
            raise MftError(f"{option}: an int8 KV cache loads with tensor parallel size 1 only")
        path = f"model.layers.{i}.self_attn"
        out.append((hf_name_of(model, f"{path}.k_proj").rsplit(".", 1)[0], attn))
    return out


def calibrate(model, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(k absmax, v absmax), each (layers, kv_heads) float64, over every position of every sequence."""
    import mindspore as ms

    k_max = v_max = None
    for seq in seqs:
        cache = model.new_kv_cache(1, len(seq))
        _, keys, values = model.forward_step(ms.Tensor(np.asarray([seq], np.int32)), ms.Tensor(0, ms.int32),
                                             cache.keys, cache.values)
        k = np.stack([np.abs(x.asnumpy()).max(axis=(0, 2, 3)) for x in keys]).astype(np.float64)
        v = np.stack([np.abs(x.asnumpy()).max(axis=(0, 2, 3)) for x in values]).astype(np.float64)
        k_max = k if k_max is None else np.maximum(k_max, k)
        v_max = v if v_max is None else np.maximum(v_max, v)
    return k_max, v_max


def scale_tensors(prefixes: list[str], k_max: np.ndarray, v_max: np.ndarray) -> dict:
    """HF tensors `<prefix>.k_scale` / `.v_scale` (kv_heads, 1, 1) float32 from the absmax per (layer, head)."""
    out = {}
    for i, prefix in enumerate(prefixes):
        out[f"{prefix}.k_scale"] = (np.maximum(k_max[i], MIN_SCALE * QMAX) / QMAX).astype(np.float32).reshape(-1, 1, 1)
        out[f"{prefix}.v_scale"] = (np.maximum(v_max[i], MIN_SCALE * QMAX) / QMAX).astype(np.float32).reshape(-1, 1, 1)
    return out


def kv_cache_scheme() -> dict:
    """compressed-tensors QuantizationArgs of the cache: int8, symmetric, static, one scale per attention head."""
    return {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "attn_head", "dynamic": False,
            "group_size": None, "observer": "minmax"}
