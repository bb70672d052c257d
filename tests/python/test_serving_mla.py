"""MLA (DeepSeek-V3) in the serving engine caches the compressed latent, not per-head keys and values.

The paged pools hold, per token and layer, kv_lora_rank latent numbers and qk_rope_head_dim rope-key
numbers (one "head" each); greedy output for a batch of mixed-length prompts, with chunked prefill and
prefix-cache hits, equals model.generate (which caches the latent the same way) and the HF fixture's
greedy ids (transformers caches the expanded keys and values) - on the composed backend (gathered latent
expanded through kv_b_proj) and on the fused one (absorbed form on the paged MLA kernel, mft.ops.paged_mla,
which `auto` picks where the kernel runs).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.ops import paged_mla
from mft.serving.engine import LLMEngine
from mft.serving.sampling import SamplingOptions

ms.set_device("CPU")
ms.runtime.launch_blocking()
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "deepseek_v3")


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


@pytest.mark.parametrize("backend", ["fused", "composed"])
def test_mla_pools_hold_the_latent_and_greedy_equals_generate_and_hf(model, backend):
    assert backend == "composed" or paged_mla.kernel_available()  # the kernels ship in the wheel
    cfg = model.config
    ref = np.load(os.path.join(FIXTURE, "reference.npz"))
    # A small token budget: the 24-token prompts prefill in chunks (continued chunks read the latent cache).
    engine = LLMEngine(model, block_size=8, max_num_seqs=4, max_model_len=64, max_num_batched_tokens=20,
                       decode_mode="pynative", attention_backend=backend)
    assert engine.runner.attention_backend == backend
    forward = engine.runner.forward
    slots = engine.runner.forward.num_slots
    assert tuple(forward.k_pool.shape) == (cfg.num_hidden_layers * slots, 1, cfg.kv_lora_rank)
    assert tuple(forward.v_pool.shape) == (cfg.num_hidden_layers * slots, 1, cfg.qk_rope_head_dim)
    per_token = forward.k_pool.shape[2] + forward.v_pool.shape[2]
    assert per_token * 4 <= cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim)  # 40 vs 160 numbers here
    ids = ref["input_ids"]
    prompts = [ids[0].tolist(), ids[1].tolist(), ids[1, :11].tolist()]
    greedy = SamplingOptions(max_tokens=10, temperature=0.0, ignore_eos=True)
    requests = engine.generate(prompts, greedy)
    for row in range(2):
        assert requests[row].seqs[0].output == ref["greedy"][row, 24:34].tolist()
    assert requests[2].seqs[0].output == model.generate([prompts[2]], max_new_tokens=10)[0, 11:].tolist()
    # A repeat of the first prompt starts from its cached latent blocks (prefix caching) and gives the same ids.
    again = engine.generate([prompts[0]], greedy)[0]
    assert engine.blocks.prefix_hits > 0
    assert again.seqs[0].output == ref["greedy"][0, 24:34].tolist()


def test_mla_paged_branch_equals_dense_attention(model):
    """One MLA layer on the paged pools (absorbed form on the kernel; each chunk's latent / rope key written to
    its slots first, later chunks reading them through the block table) gives the dense causal attention's
    outputs: a 5-token chunk into empty pools, then a 3-token chunk after it, blocks out of order."""
    assert paged_mla.kernel_available()  # the kernels ship in the wheel
    from mindspore import Parameter, ops

    from mft.models.common.attention import causal_mask

    cfg = model.config
    attn = model.model.layers[1].self_attn
    n, bs, offset = 8, 4, 16  # the layer's pools start at slot 16 (the runner's layer offset)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((1, n, cfg.hidden_size)).astype(np.float32))
    cos, sin = model.model.rotary_emb(ms.Tensor(np.arange(n, dtype=np.int32)).reshape(1, -1))
    dense = attn(x, cos, sin, causal_mask(ops.arange(0, n, dtype=ms.int32), n))[0].asnumpy()
    latent_pool = Parameter(ms.Tensor(np.zeros((2 * offset, 1, cfg.kv_lora_rank), np.float32)), name="latent_pool")
    rope_pool = Parameter(ms.Tensor(np.zeros((2 * offset, 1, cfg.qk_rope_head_dim), np.float32)), name="rope_pool")
    table = [3, 1]  # positions 0..3 in block 3 of the layer, 4..7 in block 1

    def chunk(lo, hi):
        writes = ms.Tensor(np.asarray([table[p // bs] * bs + p % bs for p in range(lo, hi)], np.int32))
        paged = (latent_pool, ms.Tensor(np.asarray([table], np.int32)), ms.Tensor(np.asarray([hi], np.int32)), offset, bs,
                 writes)
        return attn(x[:, lo:hi], cos[..., lo:hi, :], sin[..., lo:hi, :], None, None, paged, rope_pool)[0].asnumpy()

    np.testing.assert_allclose(chunk(0, 5), dense[:, :5], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunk(5, 8), dense[:, 5:], rtol=1e-4, atol=1e-5)
    assert np.abs(latent_pool.asnumpy()[:offset]).max() == 0  # nothing written outside the layer's slots
