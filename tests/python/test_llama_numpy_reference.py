"""Options the HF fixture does not exercise (Llama-3 rope scaling, attention/MLP bias, tied head, MHA),
checked against an independent float64 numpy forward written from the published formulas."""

import math

import numpy as np

import mindspore as ms

from mft.models import AutoModelForCausalLM

ms.set_device("CPU")
ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-5,
    "rope_parameters": ROPE, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True, "max_position_embeddings": 512,
}


def llama3_inv_freq(dim, theta, p):
    """Llama 3.1's reference scaling, frequency by frequency."""
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / theta ** (i / dim)
        wavelen = 2 * math.pi / freq
        low_wavelen = p["original_max_position_embeddings"] / p["low_freq_factor"]
        high_wavelen = p["original_max_position_embeddings"] / p["high_freq_factor"]
        if wavelen < high_wavelen:
            out.append(freq)
        elif wavelen > low_wavelen:
            out.append(freq / p["factor"])
        else:
            smooth = (p["original_max_position_embeddings"] / wavelen - p["low_freq_factor"]) / (p["high_freq_factor"] - p["low_freq_factor"])
            out.append((1 - smooth) * freq / p["factor"] + smooth * freq)
    return np.array(out)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def numpy_llama(w, ids, c):
    heads, d = c["num_attention_heads"], c["head_dim"]
    b, s = ids.shape
    inv = llama3_inv_freq(d, ROPE["rope_theta"], ROPE)
    ang = np.arange(s)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)  # (S, D/2): rotate pairs (i, i + D/2)

    def rope(x):  # (B, H, S, D)
        a, bb = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([a * cos - bb * sin, bb * cos + a * sin], -1)

    h = w["model.embed_tokens.weight"][ids]
    causal = np.triu(np.full((s, s), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms(h, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
        proj = {n: x @ w[f"{p}self_attn.{n}.weight"].T + w[f"{p}self_attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")}
        q, k, v = (proj[n].reshape(b, s, heads, d).transpose(0, 2, 1, 3) for n in ("q_proj", "k_proj", "v_proj"))
        scores = rope(q) @ rope(k).transpose(0, 1, 3, 2) / math.sqrt(d) + causal
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, heads * d)
        h = h + attn @ w[p + "self_attn.o_proj.weight"].T + w[p + "self_attn.o_proj.bias"]
        x = rms(h, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        lin = {n: x @ w[f"{p}mlp.{n}.weight"].T + w[f"{p}mlp.{n}.bias"] for n in ("gate_proj", "up_proj")}
        g = lin["gate_proj"]
        h = h + (g / (1 + np.exp(-g)) * lin["up_proj"]) @ w[p + "mlp.down_proj.weight"].T + w[p + "mlp.down_proj.bias"]
    h = rms(h, w["model.norm.weight"], c["rms_norm_eps"])
    return h @ w["model.embed_tokens.weight"].T


def test_llama3_rope_bias_tied_mha_forward_matches_numpy():
    model = AutoModelForCausalLM.from_config(CONFIG)
    rng = np.random.default_rng(0)
    weights = {n: (rng.normal(0, 0.2, a.shape) + (1.0 if a.ndim == 1 and "norm" in n else 0.0)).astype(np.float32) for n, a in model.hf_state_dict().items()}
    model.load_hf_state_dict(weights)
    assert model.tied and "lm_head.weight" not in weights
    ids = rng.integers(0, 96, (2, 40))  # positions past the original context: all three rope bands matter
    ours = model(ms.Tensor(ids, ms.int32)).asnumpy()
    want = numpy_llama({n: a.astype(np.float64) for n, a in weights.items()}, ids, CONFIG)
    np.testing.assert_allclose(ours, want, atol=1e-4)
    scaled = llama3_inv_freq(16, 10000.0, ROPE)
    plain = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    assert (scaled == plain).any() and (np.isclose(scaled, plain / 8)).any() and ((scaled < plain) & (scaled > plain / 8)).any()
