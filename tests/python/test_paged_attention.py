"""Paged decode attention: the C++ kernel (aot op) vs the composed MindSpore path and a numpy loop.

Random shuffled block tables in a pool shared by the rows, GQA, ragged context
lengths that are not multiples of the block size, a layer slot offset, decode
(q_len 1) and a chunk of query tokens (causal inside it)."""

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.ops import paged_attention as pa

ms.set_device("CPU")
pytestmark = pytest.mark.skipif(not pa.kernel_available(), reason="mft's C++ kernels are not built")


def make_case(seed, batch, q_len, heads, kv_heads, dim, block_size, lengths, layers=2):
    rng = np.random.default_rng(seed)
    max_blocks = -(-max(lengths) // block_size) + 1
    per_layer = batch * max_blocks + 2
    slots = layers * per_layer * block_size
    offset = (layers - 1) * per_layer * block_size
    tables = rng.permutation(per_layer)[: batch * max_blocks].reshape(batch, max_blocks).astype(np.int32)
    return dict(
        q=rng.standard_normal((batch, heads, q_len, dim)).astype(np.float32),
        k_new=rng.standard_normal((batch, kv_heads, q_len, dim)).astype(np.float32),
        v_new=rng.standard_normal((batch, kv_heads, q_len, dim)).astype(np.float32),
        k_pool=rng.standard_normal((slots, kv_heads, dim)).astype(np.float32),
        v_pool=rng.standard_normal((slots, kv_heads, dim)).astype(np.float32),
        block_tables=tables, context_lens=np.asarray(lengths, np.int32), block_size=block_size, slot_offset=offset,
    )


def numpy_attention(c):
    q, bs, off = c["q"], c["block_size"], c["slot_offset"]
    b, heads, sq, d = q.shape
    rep = heads // c["k_pool"].shape[1]
    out = np.zeros((b, sq, heads, d))
    for r in range(b):
        ctx = int(c["context_lens"][r])
        cached = ctx - sq
        slots = [off + c["block_tables"][r, p // bs] * bs + p % bs for p in range(cached)]
        for h in range(heads):
            g = h // rep
            keys = np.concatenate([c["k_pool"][slots, g], c["k_new"][r, g]])
            vals = np.concatenate([c["v_pool"][slots, g], c["v_new"][r, g]])
            for i in range(sq):
                s = keys[: cached + i + 1] @ q[r, h, i].astype(np.float64) / np.sqrt(d)
                p = np.exp(s - s.max())
                out[r, i, h] = p @ vals[: cached + i + 1] / p.sum()
    return out


def run(c, fused):
    t = {k: ms.Tensor(v) for k, v in c.items() if isinstance(v, np.ndarray)}
    return pa.paged_attention(t["q"], t["k_new"], t["v_new"], t["k_pool"], t["v_pool"], t["block_tables"],
                              t["context_lens"], c["block_size"], c["slot_offset"], fused=fused).asnumpy()


@pytest.mark.parametrize("shape", [
    # batch, q_len, heads, kv_heads, dim, block_size, lengths
    (4, 1, 8, 2, 32, 16, [37, 1, 16, 100]),  # GQA, ragged, one row with only the new token
    (3, 1, 4, 4, 20, 4, [9, 13, 2]),         # MHA, head dim not a multiple of the vector width
    (2, 1, 6, 1, 64, 1, [5, 8]),             # MQA, block size 1
    (2, 4, 4, 2, 16, 8, [4, 27]),            # a chunk of 4 queries (one row: nothing cached)
])
def test_fused_matches_composed_and_numpy(shape):
    batch, q_len, heads, kv_heads, dim, bs, lengths = shape
    c = make_case(sum(shape[:6]), batch, q_len, heads, kv_heads, dim, bs, lengths)
    fused = run(c, True)
    composed = run(c, False)
    want = numpy_attention(c)
    assert fused.shape == (batch, q_len, heads, dim)
    np.testing.assert_allclose(composed, want, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=2e-5)


def test_bad_inputs_raise():
    c = make_case(0, 2, 1, 4, 2, 16, 8, [9, 3])
    t = {k: ms.Tensor(v) for k, v in c.items() if isinstance(v, np.ndarray)}
    with pytest.raises(MftError, match="power of two"):
        pa.paged_attention(t["q"], t["k_new"], t["v_new"], t["k_pool"], t["v_pool"], t["block_tables"],
                           t["context_lens"], 6)
    with pytest.raises(MftError, match="multiple of kv_heads"):
        q3 = ms.Tensor(np.zeros((2, 3, 1, 16), np.float32))
        pa.paged_attention(q3, t["k_new"], t["v_new"], t["k_pool"], t["v_pool"], t["block_tables"],
                           t["context_lens"], 8)
    with pytest.raises(MftError, match="float32"):
        pa.paged_attention(t["q"].astype(ms.float16), t["k_new"], t["v_new"], t["k_pool"], t["v_pool"],
                           t["block_tables"], t["context_lens"], 8)


# ---- the serving engine's decode through the kernel ---------------------------------------------------

FIXTURES = __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "fixtures", "hf")


def test_engine_fused_backend_matches_composed():
    """Greedy ids and top logprobs of mixed-length prompts (GQA llama fixture, block size 4 so contexts
    are ragged over blocks) are the same with the decode attention on the kernel and on composed ops."""
    import os

    from mft.models import AutoModelForCausalLM
    from mft.serving.engine import LLMEngine
    from mft.serving.sampling import SamplingOptions

    model = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "llama"))
    ids = np.load(os.path.join(FIXTURES, "llama", "reference.npz"))["input_ids"]
    prompts = [ids[0].tolist(), ids[1, :7].tolist(), ids[1, 5:6].tolist()]
    results = {}
    for backend in ("fused", "composed"):
        engine = LLMEngine(model, block_size=4, max_num_seqs=4, max_model_len=40, decode_mode="pynative",
                           attention_backend=backend)
        assert engine.runner.attention_backend == backend
        opts = SamplingOptions(max_tokens=9, temperature=0.0, ignore_eos=True, logprobs=2)
        got = {i: [] for i in range(len(prompts))}
        requests = [engine.add_request(p, opts, on_update=lambda req, u, i=i: got[i].extend(u.logprobs))
                    for i, p in enumerate(prompts)]
        while engine.has_work():
            engine.step()
        assert any(b > 1 for b, _ in engine.stats()["decode_shapes"])  # batched decode rows
        results[backend] = [(r.seqs[0].output, [e.logprob for e in got[i]]) for i, r in enumerate(requests)]
    for (ids_f, lp_f), (ids_c, lp_c) in zip(results["fused"], results["composed"]):
        assert ids_f == ids_c and len(lp_f) == 9
        np.testing.assert_allclose(lp_f, lp_c, atol=1e-4)


def test_fused_backend_refused_where_the_kernel_cannot_serve():
    import os

    from mft.models import AutoModelForCausalLM
    from mft.serving.paged_runner import PagedRunner

    # MLA (latent + rope-key pools of different widths) runs on the paged MLA kernel in the absorbed form,
    # which folds kv_b_proj's plain weight into the query: refused when that projection computes in another dtype.
    mla = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "deepseek_v3"))
    assert PagedRunner(mla, 64, 4, 2, 32, "pynative", "auto").attention_backend == "fused"
    mla.model.layers[1].self_attn.kv_b_proj.compute_dtype = ms.float16
    with pytest.raises(MftError, match="attention-backend fused: an MLA layer's kv_b_proj"):
        PagedRunner(mla, 64, 4, 2, 32, "pynative", "fused")
    assert PagedRunner(mla, 64, 4, 2, 32, "pynative", "auto").attention_backend == "composed"
