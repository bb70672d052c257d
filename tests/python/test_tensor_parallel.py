"""Tensor parallelism without a cluster: shard/gather arithmetic, vocab-parallel cross-entropy, models built
as one simulated rank of a tp group (init, HF load/save), and the config errors.

The collectives themselves run under msrun in test_tensor_parallel_train.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import mindspore as ms

from mft.config import load_config
from mft.errors import MftError
from mft.parallel import tensor_parallel as tp
from mft.parallel.cross_entropy import IGNORE_INDEX, VocabParallelCrossEntropy, reference_loss
from mft.parallel.groups import Group

ms.set_device("CPU")  # before any kernel runs (an in-process `mft train` later in the session sets it again)

VOCAB = 97  # odd: tp=2 pads the last rank's vocabulary rows

HF = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "max_position_embeddings": 64, "tie_word_embeddings": False, "rms_norm_eps": 1e-6,
}  # fmt: skip


def fake_group(rank: int, size: int = 2) -> Group:
    """A tp group as rank `rank` sees it; layers can be built for it without a cluster (no collective runs)."""
    return Group("tp", tuple(range(size)), rank, "mft_tp_simulated")


def test_shard_and_unshard_round_trip_with_padding():
    arr = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    for axis, size in ((0, 2), (0, 3), (1, 3), (0, 7)):
        shard = tp.Shard(axis, arr.shape[axis], size)
        pieces = [tp.shard_array(arr, shard, r) for r in range(size)]
        assert all(p.shape[axis] == shard.local for p in pieces)
        np.testing.assert_array_equal(tp.unshard_arrays(pieces, shard), arr)
    last = tp.shard_array(arr, tp.Shard(0, 7, 2), 1)  # rows 4..6 and one zero row of padding
    np.testing.assert_array_equal(last[:3], arr[4:])
    np.testing.assert_array_equal(last[3], 0)
    with pytest.raises(MftError, match="expected 8 along axis 0"):
        tp.shard_array(arr, tp.Shard(0, 8, 2), 0)


def full_cross_entropy(logits, labels):
    """float64 softmax cross-entropy over the whole vocabulary, and its gradient w.r.t. the logits."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    flat = labels.reshape(-1)
    keep = flat != IGNORE_INDEX
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    n = max(keep.sum(), 1)
    loss = -np.log(p[keep, flat[keep]]).sum() / n
    grad = p.copy()
    grad[np.nonzero(keep)[0], flat[keep]] -= 1.0
    return loss, grad * keep[:, None] / n


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_vocab_parallel_cross_entropy_math_equals_full_softmax(size):
    """The ranks' arithmetic (max, sum-exp, target logit from the owning rank) simulated in numpy: the same
    loss and, per rank, exactly its columns of the full gradient (padding columns get none)."""
    rng = np.random.default_rng(size)
    logits = rng.normal(0, 3, (2, 5, VOCAB)).astype(np.float32)
    labels = rng.integers(0, VOCAB, (2, 5))
    labels[0, 1] = IGNORE_INDEX
    labels[1, 4] = VOCAB - 1  # the last id, on the rank with padding
    shard = tp.Shard(2, VOCAB, size)
    pieces = [tp.shard_array(logits, shard, r) for r in range(size)]
    loss, grads = reference_loss(pieces, labels, VOCAB)
    want_loss, want_grad = full_cross_entropy(logits, labels)
    assert abs(loss - want_loss) < 1e-12
    got = tp.unshard_arrays([g.reshape(-1, shard.local) for g in grads], tp.Shard(1, VOCAB, size))
    np.testing.assert_allclose(got, want_grad, atol=1e-12)
    real_on_last = VOCAB - (size - 1) * shard.local
    assert np.all(grads[-1].reshape(-1, shard.local)[:, real_on_last:] == 0)  # padding columns get no gradient


def test_vocab_parallel_cross_entropy_cell_at_tp1_equals_the_plain_loss():
    from mft.training.loss import causal_lm_loss

    rng = np.random.default_rng(0)
    logits = ms.Tensor(rng.normal(0, 2, (2, 6, VOCAB)).astype(np.float32))
    labels_np = rng.integers(0, VOCAB, (2, 6)).astype(np.int32)
    labels_np[1, :2] = IGNORE_INDEX
    labels = ms.Tensor(labels_np)
    cell = VocabParallelCrossEntropy(tp.SINGLE, VOCAB)
    got, grad = ms.value_and_grad(cell)(logits, labels)
    want, want_grad = ms.value_and_grad(causal_lm_loss)(logits, labels)
    assert abs(float(got.asnumpy()) - float(want.asnumpy())) < 1e-6
    np.testing.assert_allclose(grad.asnumpy(), want_grad.asnumpy(), atol=1e-7)
    np.testing.assert_allclose(float(got.asnumpy()), full_cross_entropy(logits.asnumpy(), labels_np)[0], rtol=1e-6)


@pytest.fixture(scope="module")
def models():
    """The tp=1 model and the two ranks of a tp=2 model, each initialised from the same seed."""
    from mft.models import AutoModelForCausalLM
    from mft.training.model_factory import init_weights

    full = AutoModelForCausalLM.from_config(HF)
    init_weights(full, seed=5, std=0.02)
    ranks = []
    for r in range(2):
        with tp.tensor_parallel(fake_group(r)):
            m = AutoModelForCausalLM.from_config(HF)
        init_weights(m, seed=5, std=0.02)
        ranks.append(m)
    return full, ranks


def test_sharded_layers_hold_their_slice_of_each_weight(models):
    full, ranks = models
    shards = tp.shards_by_name(ranks[0])
    assert shards["model.layers.0.self_attn.q_proj.weight"] == tp.Shard(0, 32, 2)  # 4 heads x 8 -> 2 heads a rank
    assert shards["model.layers.0.self_attn.k_proj.weight"] == tp.Shard(0, 16, 2)  # 2 kv heads -> 1 a rank
    assert shards["model.layers.0.self_attn.o_proj.weight"] == tp.Shard(1, 32, 2)  # row-parallel: input columns
    assert shards["model.layers.0.mlp.down_proj.weight"] == tp.Shard(1, 64, 2)
    assert shards["model.embed_tokens.weight"] == tp.Shard(0, VOCAB, 2)
    assert "model.norm.weight" not in shards  # replicated
    attn = ranks[0].model.layers[0].self_attn
    assert (attn.num_heads, attn.num_kv_heads, attn.n_rep) == (2, 1, 2)
    assert tuple(ranks[1].model.embed_tokens.weight.shape) == (49, 32)  # ceil(97 / 2)


def test_init_pieces_are_slices_of_the_single_process_init(models):
    full, ranks = models
    want = {n: p.asnumpy() for n, p in full.parameters_and_names()}
    shards = tp.shards_by_name(ranks[0])
    for name, value in want.items():
        pieces = [dict(m.parameters_and_names())[name].asnumpy() for m in ranks]
        if name in shards:
            np.testing.assert_array_equal(tp.unshard_arrays(pieces, shards[name]), value, err_msg=name)
        else:
            for piece in pieces:
                np.testing.assert_array_equal(piece, value, err_msg=name)
    np.testing.assert_array_equal(ranks[1].model.embed_tokens.weight.asnumpy()[-1], 0)  # the padding row


def test_hf_load_slices_and_gathered_save_is_the_full_layout(models):
    full, ranks = models
    rng = np.random.default_rng(1)
    hf = {k: rng.normal(0, 1, v.shape).astype(np.float32) for k, v in full.hf_state_dict().items()}
    for m in ranks:
        m.load_hf_state_dict(hf, "test tensors")
    # What gather_full assembles from the ranks (its collective simulated by stacking the pieces):
    shards = tp.shards_by_name(ranks[0])
    values = {}
    for name, _ in ranks[0].parameters_and_names():
        pieces = [dict(m.parameters_and_names())[name].asnumpy() for m in ranks]
        values[name] = tp.unshard_arrays(pieces, shards[name]) if name in shards else pieces[0]
    saved = ranks[0].hf_state_dict(values)
    assert set(saved) == set(hf)
    for k in hf:
        np.testing.assert_array_equal(saved[k], hf[k], err_msg=k)
    # Optimizer moments are keyed by parameter name and cut the same way.
    moments = {f"exp_avg.{n}": v for n, v in values.items()} | {"optimizer_step": np.array(3, np.int32)}
    mine = tp.shard_values(ranks[1], moments, tp.state_param_name)
    np.testing.assert_array_equal(mine["exp_avg.lm_head.weight"], tp.shard_array(hf["lm_head.weight"], tp.Shard(0, VOCAB, 2), 1))
    assert mine["optimizer_step"] == 3
    bad = dict(hf, **{"lm_head.weight": hf["lm_head.weight"][:-1]})
    with pytest.raises(MftError, match=r"lm_head.weight has shape \(96, 32\) but the model expects \(97, 32\)"):
        ranks[0].load_hf_state_dict(bad, "bad.safetensors")


def test_heads_that_do_not_split_are_errors_naming_the_key():
    from mft.models import AutoModelForCausalLM

    with tp.tensor_parallel(fake_group(0, 4)):
        with pytest.raises(MftError, match="parallel.tp=4 must divide model.num_kv_heads=2"):
            AutoModelForCausalLM.from_config(HF)


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("tpcfg") / "r.yaml"
    path.write_text(yaml.safe_dump({
        "run": {"output_dir": "out"}, "tokenizer": {"path": "t.json"}, "data": {"prefix": "d", "seq_len": 16},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2},
    }))  # fmt: skip
    return str(path)


@pytest.mark.parametrize("overrides, message", [
    (["parallel.tp=3"], "parallel.tp=3 must divide model.num_heads=4"),
    (["parallel.tp=4"], "parallel.tp=4 must divide model.num_kv_heads=2"),
    (["parallel.tp=4", "model.num_kv_heads=4", "model.intermediate_size=66"], "parallel.tp=4 must divide model.intermediate_size=66"),
    (["parallel.tp=0"], "parallel.tp must be an integer >= 1"),
    (["parallel.tp=2", "model.arch=mixtral", "model.num_experts=4"], "tensor parallelism is implemented for the dense families"),
    (["parallel.sp=true"], "parallel.sp \\(sequence parallel\\) splits activations over the tensor-parallel group; it needs parallel.tp > 1"),
    (["parallel.tp=2", "parallel.sp=true", "data.seq_len=15"], "parallel.sp with parallel.tp=2: data.seq_len=15 must be a multiple of tp"),
    (["parallel.tp=2", "train.optimizer.name=muon"], "only adamw"),
    (["parallel.tp=2", "finetune.method=lora"], "LoRA is not tensor-parallel yet"),
    (["parallel.pp=2"], "parallel.pp=2: the model has only 1 layers \\(model.num_layers\\); each stage needs at least one"),
    (["parallel.ep=2"], "parallel.ep=2: expert parallelism needs a mixture-of-experts model"),
    (["parallel.cp=2", "data.seq_len=18"], "parallel.cp=2: data.seq_len=18 must be a multiple of 2\\*parallel.cp=4"),
    (["parallel.zero=3"], "parallel.zero must be 0, 1 \\(optimizer state sharded over dp\\) or 2"),
    (["parallel.zero=1", "parallel.dp=2", "train.optimizer.name=muon"], "parallel.zero=1 with train.optimizer.name=muon: only adamw"),
])  # fmt: skip
def test_unsupported_layouts_are_config_errors(base_cfg, overrides, message, monkeypatch):
    from mft.training.trainer import check_supported

    monkeypatch.setenv("MS_ROLE", "MS_WORKER")  # as inside msrun: the layout checks, not the device count
    with pytest.raises(MftError, match=message):
        check_supported(load_config(base_cfg, overrides))


def test_a_valid_tp_layout_passes_the_checks(base_cfg, monkeypatch):
    from mft.training.trainer import check_supported

    # one process outside msrun: a layout of 4 ranks says how to launch it
    with pytest.raises(MftError, match=r"dp\*tp\*pp\*cp = 2\*2\*1\*1 needs 4 devices .* --nproc 4"):
        check_supported(load_config(base_cfg, ["parallel.tp=2", "parallel.dp=2", "train.micro_batch_size=4"]))
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")  # a worker msrun started
    check_supported(load_config(base_cfg, ["parallel.tp=2", "parallel.dp=2", "train.micro_batch_size=4"]))
    check_supported(load_config(base_cfg, ["parallel.tp=2", "model.arch=qwen3", "model.vocab_size=101"]))  # vocab is padded
    check_supported(load_config(base_cfg, ["parallel.tp=2", "parallel.sp=true"]))


def test_sequence_parallel_layers_scatter_the_sequence_and_sum_norm_grads():
    """Under sp the regions between tp layers are split along the sequence: entering a tp region gathers it,
    leaving reduce-scatters it, and every norm (and row-parallel bias) sees 1/tp of the tokens, so its
    gradient is summed over tp."""
    from mft.models import AutoModelForCausalLM
    from mft.parallel import mappings

    with tp.tensor_parallel(fake_group(0), sequence_parallel=True):
        m = AutoModelForCausalLM.from_config(dict(HF, mlp_bias=True, tie_word_embeddings=True))
    layer = m.model.layers[0]
    assert isinstance(layer.self_attn.copy, mappings.GatherFromSequenceRegion)
    assert isinstance(layer.mlp.down_proj.reduce, mappings.ReduceScatterToRegion)
    assert isinstance(m.model.embed_tokens.reduce, mappings.ReduceScatterToRegion)
    assert isinstance(m.tied_copy, mappings.GatherFromSequenceRegion)
    partial = {n for n, p in m.parameters_and_names() if id(p) in tp.partial_grad_params(m)}
    assert partial == {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                       "model.layers.0.mlp.down_proj.bias", "model.norm.weight"}
    with tp.tensor_parallel(fake_group(0)):
        plain = AutoModelForCausalLM.from_config(HF)
    assert isinstance(plain.model.layers[0].self_attn.copy, mappings.CopyToRegion)
    assert not tp.partial_grad_params(plain)
