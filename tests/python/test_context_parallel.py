"""Context parallelism without a cluster: the chunk split and positions, the attention of simulated cp ranks
over gathered K/V against full causal attention (forward and backward, GQA; the fused C++ kernel at each
chunk's query offset and the composed path), and the config errors.

The collectives themselves (K/V all-gather and its reduce-scatter backward, loss total, gradient sum) run
under msrun in test_context_parallel_train.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms

from mft.config import load_config
from mft.errors import MftError
from mft.parallel import context_parallel as cpar
from mft.parallel.groups import Group

ms.set_device("CPU")


def fake_group(rank: int, size: int) -> Group:
    """A cp group as rank `rank` sees it: cells are built for it without a cluster (no collective runs here)."""
    return Group("cp", tuple(range(size)), rank, "mft_cp_simulated")


@pytest.mark.parametrize("cp", [1, 2, 3, 4])
def test_chunks_cover_the_sequence_once_and_balance_the_causal_work(cp):
    seq = 8 * cp
    c = seq // (2 * cp)
    pieces = [cpar.local_positions(seq, cp, r) for r in range(cp)]
    assert all(p.dtype == np.int32 and p.shape == (2 * c,) for p in pieces)
    for r, p in enumerate(pieces):  # chunk r, then chunk 2cp-1-r, each contiguous and ascending
        np.testing.assert_array_equal(p[:c], np.arange(r * c, (r + 1) * c))
        np.testing.assert_array_equal(p[c:], np.arange((2 * cp - 1 - r) * c, (2 * cp - r) * c))
    np.testing.assert_array_equal(np.sort(np.concatenate(pieces)), np.arange(seq))
    np.testing.assert_array_equal(cpar.gathered_positions(seq, cp), np.concatenate(pieces))
    # every rank has the same number of (query, visible key) pairs: sum over its queries of (position + 1)
    work = {int((p + 1).sum()) for p in pieces}
    assert len(work) == 1
    x = np.arange(3 * seq).reshape(3, seq)
    split = [cpar.split_sequence(x, cp, r) for r in range(cp)]
    np.testing.assert_array_equal(split[0][:, :c], x[:, :c])
    np.testing.assert_array_equal(cpar.merge_sequence(split), x)


def test_chunk_errors_name_the_keys():
    with pytest.raises(MftError, match=r"data.seq_len=10 must be a multiple of 2\*parallel.cp=4"):
        cpar.local_positions(10, 2, 0)
    with pytest.raises(MftError, match="cp rank 2 is outside parallel.cp=2"):
        cpar.local_positions(8, 2, 2)


def test_chunk_select_positions_and_prefix_problems_of_a_simulated_rank():
    seq, cp = 16, 2
    c = seq // (2 * cp)
    ids = np.arange(2 * seq, dtype=np.int32).reshape(2, seq)
    keys = np.arange(seq, dtype=np.float32)  # gathered "keys" whose value is their position
    for r in range(cp):
        info = cpar.ContextParallel(fake_group(r, cp), seq)
        got = cpar.chunk_select(info)(ms.Tensor(ids)).asnumpy()
        np.testing.assert_array_equal(got, cpar.split_sequence(ids, cp, r))
        np.testing.assert_array_equal(cpar.positions(info)().asnumpy(), cpar.local_positions(seq, cp, r))
        gathered = ms.Tensor(np.take(keys, cpar.gathered_positions(seq, cp)).reshape(1, 1, seq, 1))
        q = ms.Tensor(np.zeros((1, 1, 2 * c, 1), np.float32))
        qa, ka, va, mask_a, qb, kb, vb, mask_b = cpar.chunk_problems(info)(q, gathered, gathered)
        for chunk, k, mask in ((r, ka, mask_a), (2 * cp - 1 - r, kb, mask_b)):
            # the chunk's keys are the sequence prefix up to its end, in position order ...
            np.testing.assert_array_equal(k.asnumpy().reshape(-1), np.arange((chunk + 1) * c))
            # ... and query t (position chunk*c + t) sees key j where j <= its position
            visible = mask.asnumpy()[0, 0] == 0
            np.testing.assert_array_equal(visible, np.arange((chunk + 1) * c)[None, :] <= (chunk * c + np.arange(c))[:, None])
        assert qa.shape == qb.shape == (1, 1, c, 1)


def simulated_cp_attention(q, k, v, cp: int, seq: int, fused: bool = True):
    """Full-sequence q/k/v -> every simulated rank's attention output, merged back into sequence order.

    Each rank takes its chunks of q, k, v; the all-gather of k/v is the concatenation of every rank's
    chunks (gathered order); the rank's `AttentionCore` built for cp (the cell the model runs) attends.
    """
    from mft.models.common.attention import AttentionCore

    index = [ms.Tensor(cpar.local_positions(seq, cp, r)) for r in range(cp)]
    k_all = ms.ops.concat([ms.ops.gather(k, i, 2) for i in index], 2)
    v_all = ms.ops.concat([ms.ops.gather(v, i, 2) for i in index], 2)
    outs = []
    n_rep = q.shape[1] // k.shape[1]
    for r in range(cp):
        core = AttentionCore(q.shape[-1] ** -0.5, n_rep, fused, cpar.ContextParallel(fake_group(r, cp), seq))
        outs.append(core(ms.ops.gather(q, index[r], 2), k_all, v_all, None))  # (B, 2c, H * D)
    order = ms.Tensor(np.argsort(cpar.gathered_positions(seq, cp)).astype(np.int32))
    return ms.ops.gather(ms.ops.concat(outs, 1), order, 1)


@pytest.mark.parametrize("cp, fused, c", [(2, True, 4), (4, True, 4), (2, False, 4), (4, False, 4), (2, True, 40)])
def test_simulated_ranks_equal_full_causal_attention_forward_and_backward(cp, fused, c):
    from mft.ops.attention import attention_reference

    rng = np.random.default_rng(cp)
    # GQA: two query heads per kv head; c = 40: chunks cross the kernel's 64-row tiles at their offsets
    b, heads, kv_heads, seq, d = 2, 4, 2, 2 * c * cp, 8
    q, k, v = (ms.Tensor(rng.standard_normal((b, h, seq, d)).astype(np.float32)) for h in (heads, kv_heads, kv_heads))
    dout = ms.Tensor(rng.standard_normal((b, seq, heads * d)).astype(np.float32))

    def full(q, k, v):
        out = attention_reference(q, k, v)  # (B, H, S, D)
        return (out.swapaxes(1, 2).reshape(b, seq, heads * d) * dout).sum()

    def parallel(q, k, v):
        return (simulated_cp_attention(q, k, v, cp, seq, fused) * dout).sum()

    want = ms.value_and_grad(full, (0, 1, 2))(q, k, v)
    got = ms.value_and_grad(parallel, (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(got[0].asnumpy(), want[0].asnumpy(), rtol=1e-5)
    for name, g, w in zip("qkv", got[1], want[1]):
        np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-4, atol=1e-5, err_msg=f"d{name}")


def test_attention_built_for_cp_gathers_kv_and_attends_per_chunk_fused_or_composed():
    from mft.models.common.attention import Attention

    with cpar.context_parallel(fake_group(1, 2), 32):
        attn = Attention(32, 4, 2, 8, fused_attention=True, qk_norm=True)
        composed = Attention(32, 4, 2, 8, fused_attention=False)
    assert attn.has_kv_gather and attn.core.has_chunks and attn.core.chunks.fused
    assert composed.core.has_chunks and not composed.core.chunks.fused
    # rank 1 of cp=2 (c = 8) holds chunks 1 and 2: queries at positions 8.. and 16..
    assert (attn.core.chunks.offset_a, attn.core.chunks.offset_b) == (8, 16)
    plain = Attention(32, 4, 2, 8, fused_attention=True)
    assert not plain.has_kv_gather and plain.core.fused
    assert cpar.current() is None
    with cpar.context_parallel(fake_group(0, 1), 30):  # cp=1: nothing changes, any seq_len
        assert cpar.current() is None
    with pytest.raises(MftError, match="data.seq_len=30"):
        with cpar.context_parallel(fake_group(0, 2), 30):
            pass
    assert cpar.current() is None  # the refused setting did not stay behind for later models


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("cp_config")
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "run": {"output_dir": str(root / "out")}, "tokenizer": {"path": "tok.json"},
        "data": {"prefix": "data", "seq_len": 64}, "parallel": {"cp": 2},
    }))  # fmt: skip
    return str(path)


@pytest.mark.parametrize("overrides, match", [
    (["data.seq_len=62"], r"parallel.cp=2: data.seq_len=62 must be a multiple of 2\*parallel.cp=4"),
    (["model.arch=deepseek_v3", "model.num_experts=4"], "model.arch=deepseek_v3.*MLA"),
    (["model.arch=mixtral", "model.num_experts=4"], "not model.arch=mixtral"),
    (["finetune.packing=true"], "finetune.packing=true"),
    (["finetune.distill.teacher=some/dir"], "finetune.distill.teacher"),
    (["parallel.tp=4", "parallel.sp=true", "data.seq_len=68"], r"each cp rank's 34 tokens .* parallel.tp=4"),
    (["monitor.grad_histograms=true", "monitor.histograms_every=1"], "monitor.grad_histograms"),
])  # fmt: skip
def test_unsupported_combinations_are_refused_naming_the_keys(recipe, overrides, match):
    from mft.training.run_setup import check_supported

    cfg = load_config(recipe, overrides)
    with pytest.raises(MftError, match=match) as err:
        check_supported(cfg)
    assert "parallel.cp" in str(err.value)


def test_supported_recipe_passes_and_grad_reducer_is_identity_at_cp1(recipe):
    from mft.parallel.context_parallel import check_config

    check_config(load_config(recipe))
    check_config(load_config(recipe, ["model.arch=qwen3", "parallel.dp=2", "train.micro_batch_size=2"]))
    check_config(load_config(recipe, ["parallel.tp=2", "parallel.sp=true"]))
    inner = object()
    assert cpar.grad_reducer(fake_group(0, 1), [], inner) is inner
