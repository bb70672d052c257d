"""MLA decode attention over the paged latent cache (absorbed form): the C++ kernel (aot op) and the
composed MindSpore reference vs a float64 numpy loop.

Random shuffled block tables in a pool shared by the rows, ragged context lengths that are not multiples
of the block size, block sizes 1..64, a layer slot offset, decode (q_len 1) and query chunks (causal
inside the chunk; one row with nothing cached), head counts that do and do not fill the kernel's groups
of 4 query rows, latent widths that are not a multiple of the vector width, a batch-1 case large enough
for the kernel to split its heads over threads."""

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.ops import paged_mla as pm

ms.set_device("CPU")


def test_the_kernel_ships_in_the_build():
    assert pm.kernel_available()  # the wheel builds mft._kernels; a missing kernel is a failure, not a skip


def make_case(seed, batch, q_len, heads, rank, rope_dim, block_size, lengths, layers=2):
    rng = np.random.default_rng(seed)
    max_blocks = -(-max(lengths) // block_size) + 1
    per_layer = batch * max_blocks + 2
    slots = layers * per_layer * block_size
    offset = (layers - 1) * per_layer * block_size
    tables = rng.permutation(per_layer)[: batch * max_blocks].reshape(batch, max_blocks).astype(np.int32)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return dict(
        q_latent=f(batch, heads, q_len, rank), q_rope=f(batch, heads, q_len, rope_dim),
        latent_new=f(batch, q_len, rank), rope_new=f(batch, q_len, rope_dim),
        latent_pool=f(slots, 1, rank), rope_pool=f(slots, 1, rope_dim),
        block_tables=tables, context_lens=np.asarray(lengths, np.int32), block_size=block_size, slot_offset=offset,
        scale=float(rng.uniform(0.05, 0.3)),
    )


def numpy_mla(c):
    ql, qr, bs, off = c["q_latent"], c["q_rope"], c["block_size"], c["slot_offset"]
    b, heads, sq, rank = ql.shape
    out = np.zeros((b, sq, heads, rank))
    for r in range(b):
        cached = int(c["context_lens"][r]) - sq
        slots = [off + c["block_tables"][r, p // bs] * bs + p % bs for p in range(cached)]
        lat = np.concatenate([c["latent_pool"][slots, 0], c["latent_new"][r]]).astype(np.float64)  # (ctx, R)
        rope = np.concatenate([c["rope_pool"][slots, 0], c["rope_new"][r]]).astype(np.float64)
        s = (ql[r].astype(np.float64) @ lat.T + qr[r].astype(np.float64) @ rope.T) * c["scale"]  # (H, Sq, ctx)
        visible = np.arange(cached + sq)[None, :] <= cached + np.arange(sq)[:, None]  # (Sq, ctx)
        s = np.where(visible[None], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        out[r] = (p / p.sum(-1, keepdims=True) @ lat).swapaxes(0, 1)
    return out


def run(c, fused):
    t = {k: ms.Tensor(v) for k, v in c.items() if isinstance(v, np.ndarray)}
    return pm.paged_mla(t["q_latent"], t["q_rope"], t["latent_new"], t["rope_new"], t["latent_pool"], t["rope_pool"],
                        t["block_tables"], t["context_lens"], c["block_size"], c["slot_offset"], scale=c["scale"],
                        fused=fused).asnumpy()


@pytest.mark.parametrize("shape", [
    # batch, q_len, heads, rank, rope_dim, block_size, lengths
    (4, 1, 4, 32, 8, 8, [37, 1, 16, 100]),     # the serving fixture's MLA sizes, ragged, one row without cache
    (3, 1, 6, 20, 4, 4, [9, 13, 2]),            # rank and rope not multiples of the vector width, 4 + 2 heads
    (2, 1, 1, 64, 16, 1, [5, 8]),               # one head, block size 1
    (2, 4, 3, 48, 8, 16, [4, 27]),              # a chunk of 4 queries (one row: nothing cached)
    (2, 3, 5, 32, 8, 64, [70, 3]),              # block size 64, a chunk across a block boundary
    (1, 1, 16, 128, 32, 16, [300]),             # batch 1 with enough work for the heads to split over threads
])
def test_fused_and_composed_match_float64_numpy(shape):
    batch, q_len, heads, rank, rope_dim, bs, lengths = shape
    c = make_case(sum(shape[:6]), batch, q_len, heads, rank, rope_dim, bs, lengths)
    want = numpy_mla(c)
    fused = run(c, True)
    composed = run(c, False)
    assert fused.shape == (batch, q_len, heads, rank)
    np.testing.assert_allclose(composed, want, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=2e-5)


def test_chunk_with_head_axis_and_pools_without_one():
    """(B, 1, Sq, .) chunk tensors (the model's k_rot layout) and (slots, .) pools give the same result."""
    c = make_case(3, 2, 2, 4, 32, 8, 4, [6, 11])
    want = run(c, True)
    c2 = dict(c, latent_new=c["latent_new"][:, None], rope_new=c["rope_new"][:, None],
              latent_pool=c["latent_pool"][:, 0], rope_pool=c["rope_pool"][:, 0])
    np.testing.assert_array_equal(run(c2, True), want)
    np.testing.assert_allclose(run(c2, False), want, rtol=1e-4, atol=2e-5)


def test_bad_inputs_raise():
    c = make_case(0, 2, 1, 4, 16, 8, 8, [9, 3])
    t = {k: ms.Tensor(v) for k, v in c.items() if isinstance(v, np.ndarray)}
    args = [t[k] for k in ("q_latent", "q_rope", "latent_new", "rope_new", "latent_pool", "rope_pool",
                           "block_tables", "context_lens")]
    with pytest.raises(MftError, match="power of two"):
        pm.paged_mla(*args, 6, scale=0.1)
    with pytest.raises(MftError, match="float32"):
        pm.paged_mla(args[0].astype(ms.float16), *args[1:], 8, scale=0.1)
    with pytest.raises(MftError, match="pools must be"):
        pm.paged_mla(*args[:4], args[5], args[4], *args[6:], 8, scale=0.1)  # pools swapped
    with pytest.raises(MftError, match="latent_new"):
        pm.paged_mla(*args[:2], args[2][:1], *args[3:], 8, scale=0.1, fused=False)
    with pytest.raises(MftError, match="block_tables"):
        pm.paged_mla(*args[:6], args[6][:1], args[7], 8, scale=0.1)
