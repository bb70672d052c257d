"""ZeRO's arithmetic in-process (no msrun): the flat layout, the per-element AdamW update, state slicing, config checks.

The multi-rank runs are in test_zero_train.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from mft.config import load_config
from mft.errors import MftError
from mft.parallel.zero_layout import FlatLayout

SIZES = (6, 1, 10, 4, 3)  # 24 elements: padded to 25 at dp=5, 28 at dp=7, 30 at dp=30


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5, 7, 30])
def test_every_element_is_in_exactly_one_shard_in_flat_order(world):
    lay = FlatLayout(SIZES, world)
    assert lay.total == 24
    assert lay.shard == -(-24 // world) and lay.padded == lay.shard * world and lay.padded >= 24
    seen = []
    for rank in range(world):
        at = 0
        for seg in lay.segments(rank):
            assert seg.at == at  # segments are contiguous inside the shard
            at += seg.size
            seen += [(seg.index, e) for e in range(seg.start, seg.stop)]
        assert at + lay.pad(rank) == lay.shard
        assert lay.pad(rank) == 0 or rank == world - 1 or at == 0  # padding only after the last element
    assert seen == [(i, e) for i, n in enumerate(SIZES) for e in range(n)]
    assert sum(lay.pad(r) for r in range(world)) == lay.padded - lay.total


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_concatenate_to_the_padded_flat_buffer_and_unflatten_back(world):
    rng = np.random.default_rng(0)
    shapes = [(2, 3), (1,), (10,), (2, 2), (3,)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    lay = FlatLayout.of_shapes(shapes, world)
    flat = np.concatenate([lay.shard_of(arrays, r) for r in range(world)])
    want = np.concatenate([a.reshape(-1) for a in arrays])
    np.testing.assert_array_equal(flat[:24], want)
    np.testing.assert_array_equal(flat[24:], 0)  # the padding is zeros
    for a, b in zip(lay.unflatten(flat, shapes), arrays):
        np.testing.assert_array_equal(a, b)


def test_runs_merge_neighbours_with_the_same_settings_and_keep_the_padding_apart():
    lay = FlatLayout(SIZES, 5)  # shard 5 (padded 25): offsets 0, 6, 7, 17, 21
    keys = ["decay", "none", "decay", "decay", "none"]
    assert lay.runs(0, keys) == ((0, 5, "decay"),)
    assert lay.runs(1, keys) == ((0, 1, "decay"), (1, 2, "none"), (2, 5, "decay"))  # p0[5:6], p1, p2[0:3]
    assert lay.runs(3, keys) == ((0, 5, "decay"),)  # p2[8:10] + p3[0:3]: one run
    assert lay.runs(4, keys) == ((0, 1, "decay"), (1, 4, "none"), (4, 5, None))  # p3[3:4], p4, 1 padding


def test_bad_layouts_are_errors():
    with pytest.raises(MftError, match="rank 2 outside 0..1"):
        FlatLayout(SIZES, 2).segments(2)
    with pytest.raises(MftError, match="expected a flat buffer of 24"):
        FlatLayout(SIZES, 2).unflatten(np.zeros(23), [(6,), (1,), (10,), (4,), (3,)])
    with pytest.raises(MftError, match="parallel.dp must be >= 1"):
        FlatLayout(SIZES, 0)


# ----------------------------------------------------------------------------- the optimizer (MindSpore)


def _params(seed=0):
    import mindspore as ms
    from mindspore import Parameter

    rng = np.random.default_rng(seed)
    spec = [("model.embed_tokens.weight", (5, 4)), ("model.layers.0.input_layernorm.weight", (4,)),
            ("model.layers.0.mlp.up_proj.weight", (3, 4)), ("model.layers.0.mlp.up_proj.bias", (3,)),
            ("lm_head.weight", (5, 3))]  # fmt: skip
    return [Parameter(ms.Tensor(rng.standard_normal(s).astype(np.float32)), name=n) for n, s in spec]


def _settings(params):
    from mft.training.optim.rules import param_settings

    groups = [{"pattern": r"\.mlp\.", "lr_scale": 0.5}, {"pattern": "lm_head", "weight_decay": 0.3}]
    s = param_settings(params, 0.1, groups)
    return [x.lr_scale for x in s], [x.weight_decay for x in s]


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_adamw_at_dp1_equals_adamw_with_decay_rules_and_param_groups(stage):
    """At dp=1 the shard is the whole flat buffer: the per-run update must equal the fused AdamW kernel's."""
    import mindspore as ms

    from mft.parallel.groups import Group
    from mft.parallel.zero import ZeroAdamW
    from mft.training.optim.adamw import AdamW

    a_params, z_params = _params(), _params()
    scales, decays = _settings(a_params)
    assert decays == [0.0, 0.0, 0.1, 0.0, 0.3] and scales == [1.0, 1.0, 0.5, 0.5, 1.0]
    adamw = AdamW(a_params, betas=(0.9, 0.95), eps=1e-8, lr_scales=scales, weight_decays=decays)
    zero = ZeroAdamW(z_params, Group("dp", (0,), 0, None), stage, betas=(0.9, 0.95), eps=1e-8, lr_scales=scales,
                     weight_decays=decays)  # fmt: skip
    reducer = zero.grad_reducer()
    rng = np.random.default_rng(1)
    for step in range(3):
        grads = tuple(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in a_params)
        lr = ms.Tensor(0.01 * (step + 1), ms.float32)
        adamw(grads, lr)
        zero(reducer(grads) if stage == 2 else grads, lr)
    for a, z in zip(a_params, z_params):
        np.testing.assert_allclose(z.asnumpy(), a.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)
    saved = {k: v.asnumpy() for k, v in adamw.state_tensors().items()}
    from mft.parallel.zero import full_state

    class Step:  # what full_state reads of a TrainStep
        optimizer = zero

        def state_tensors(self):
            return zero.state_tensors()

    got = full_state(Step())
    assert set(got) == set(saved)
    for k in saved:
        np.testing.assert_allclose(got[k], saved[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_a_saved_full_state_is_sliced_to_each_ranks_shard():
    from mft.parallel.groups import Group
    from mft.parallel.zero import ZeroAdamW

    params = _params()
    n = sum(int(np.prod(p.shape)) for p in params)  # 20 + 4 + 12 + 3 + 15 = 54 -> shard 18 at dp=3
    rng = np.random.default_rng(2)
    saved = {"optimizer_step": np.array(7, np.int32)}
    for kind in ("exp_avg", "exp_avg_sq"):
        for p in params:
            saved[f"{kind}.{p.name}"] = rng.standard_normal(p.shape).astype(np.float32)
    flat = {kind: np.concatenate([saved[f"{kind}.{p.name}"].reshape(-1) for p in params]) for kind in ("exp_avg", "exp_avg_sq")}
    for rank in range(3):
        zero = ZeroAdamW(params, Group("dp", (0, 1, 2), rank, "unused"), 1)  # never run: no communicator needed
        assert zero.layout.shard == 18 and n == 54
        info = zero.describe()
        assert info["optimizer_state_elements"] == 2 * 18 + 1 and info["parameters"] == 54
        out = zero.shard_saved_state(saved, "ckpt")
        assert int(out["optimizer_step"]) == 7
        for kind in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(out[f"{kind}.zero_shard"], flat[kind][rank * 18:(rank + 1) * 18])
            assert not any(k.startswith(kind + ".model") for k in out)
    bad = dict(saved)
    del bad["exp_avg.lm_head.weight"]
    with pytest.raises(MftError, match="ckpt/optimizer.safetensors: missing optimizer state 'exp_avg.lm_head.weight'"):
        zero.shard_saved_state(bad, "ckpt")
    bad = dict(saved, **{"exp_avg_sq.lm_head.weight": np.zeros((3, 5), np.float32)})
    with pytest.raises(MftError, match=r"has shape \(3, 5\), the model needs \(5, 3\)"):
        zero.shard_saved_state(bad, "ckpt")


# ----------------------------------------------------------------------------- config checks


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("zero_cfg") / "r.yaml"
    path.write_text(yaml.safe_dump({
        "run": {"output_dir": "out"}, "tokenizer": {"path": "t.json"}, "data": {"prefix": "d", "seq_len": 16},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2},
    }))  # fmt: skip
    return str(path)


@pytest.mark.parametrize("overrides, message", [
    (["parallel.zero=3"], "parallel.zero must be 0, 1 .* or 2 .*got 3"),
    (["parallel.zero=1", "train.optimizer.name=muon"], "parallel.zero=1 with train.optimizer.name=muon: only adamw"),
    (["parallel.zero=2", "train.optimizer.name=adafactor"], "parallel.zero=2 with train.optimizer.name=adafactor"),
    (["parallel.zero=1", "monitor.spike.action=skip"], "parallel.zero=1 with monitor.spike.action=skip"),
    (["parallel.zero=2", "monitor.optimizer_state_norm=true"], "parallel.zero=2 with monitor.optimizer_state_norm"),
])  # fmt: skip
def test_config_refusals_name_the_keys(base_cfg, overrides, message):
    from mft.parallel.zero_config import check_config

    with pytest.raises(MftError, match=message):
        check_config(load_config(base_cfg, overrides))


def test_zero_is_accepted_by_the_trainer_checks(base_cfg):
    from mft.training.run_setup import check_supported

    for z in (0, 1, 2):  # (dp > 1 needs msrun workers, which check_supported also checks)
        check_supported(load_config(base_cfg, [f"parallel.zero={z}"]))
