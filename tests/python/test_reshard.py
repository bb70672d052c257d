"""Resharding and rank-local loading on real fixture checkpoints and on
hand-written layouts: every layout change must reproduce the exact tensors."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as hf_st

from mft.errors import MftError
from mft.training.checkpoint import single_rank_layout
from mft.weights.plans import Placer
from mft.weights.reshard import load_full, load_rank, reshard
from mft.weights.safetensors import load_file, read_header, save_file

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
FAMILIES = ["llama", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"]
MOE = {"mixtral", "qwen3_moe"}


def original(family: str) -> dict[str, np.ndarray]:
    return load_file(os.path.join(FIX, family, "model.safetensors"))


def expected_shard(full: np.ndarray, axis, padded: int, tp: int, tp_i: int) -> np.ndarray:
    if axis is None:
        return full
    pad = [(0, 0)] * full.ndim
    pad[axis] = (0, padded - full.shape[axis])
    return np.split(np.pad(full, pad), tp, axis=axis)[tp_i]


@pytest.mark.parametrize("family", FAMILIES)
def test_split_and_merge_every_family(tmp_path, family):
    ref = original(family)
    par = (2, 2, 2) if family in MOE else (2, 2, 1)
    out = tmp_path / "split"
    stats = reshard(os.path.join(FIX, family), out, *par)
    assert stats["files"] == par[0] * par[1] * par[2]
    layout = json.loads((out / "layout.json").read_text())
    assert layout["parallel"] == {"dp": 1, "tp": par[0], "pp": par[1], "ep": par[2]}
    assert (out / "config.json").read_bytes() == open(os.path.join(FIX, family, "config.json"), "rb").read()
    # Each rank file holds exactly the numpy-sliced shard the plan names.
    files = {f: hf_st.load_file(str(out / f)) for f in {p["file"] for t in layout["tensors"].values() for p in t["pieces"]}}
    for name, t in layout["tensors"].items():
        for p in t["pieces"]:
            box = tuple(slice(o, o + s) for o, s in zip(p["offset"], p["shape"]))
            np.testing.assert_array_equal(files[p["file"]][name], ref[name][box], err_msg=name)
    # Merging back (reshard to 1/1/1) reproduces the original HF file keys, shapes and bytes.
    merged = tmp_path / "merged"
    reshard(out, merged)
    back = load_file(str(merged / "model.safetensors"))
    assert sorted(back) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k], err_msg=k)


def test_column_row_vocab_and_expert_placement():
    metas = {
        "model.embed_tokens.weight": ("F32", [10, 4]),
        "model.layers.0.self_attn.q_proj.weight": ("F32", [8, 4]),
        "model.layers.0.self_attn.o_proj.weight": ("F32", [4, 8]),
        "model.layers.1.mlp.experts.3.down_proj.weight": ("F32", [4, 8]),
        "model.layers.1.mlp.experts.0.up_proj.weight": ("F32", [8, 4]),
        "model.layers.1.input_layernorm.weight": ("F32", [4]),
        "model.norm.weight": ("F32", [4]),
        "lm_head.weight": ("F32", [10, 4]),
    }
    pl = Placer(metas, tp=4, pp=2, ep=2)
    assert pl.split("model.embed_tokens.weight") == (0, 12)  # padded to a multiple of tp
    assert pl.split("model.layers.0.self_attn.q_proj.weight") == (0, 8)
    assert pl.split("model.layers.0.self_attn.o_proj.weight") == (1, 8)
    assert pl.split("model.norm.weight") == (None, 0)
    assert [pl.stage(n) for n in ("model.embed_tokens.weight", "model.layers.1.input_layernorm.weight", "lm_head.weight")] == [0, 1, 1]
    assert pl.expert_rank("model.layers.1.mlp.experts.3.down_proj.weight") == 1
    assert pl.expert_rank("model.layers.1.mlp.experts.0.up_proj.weight") == 0
    stored = [b for b in pl.boxes("model.norm.weight") if b[-1]]
    assert len(stored) == 1  # replicated tensors are stored once
    with pytest.raises(MftError, match="q_proj.*does not split"):
        Placer({"model.layers.0.self_attn.q_proj.weight": ("F32", [6, 4])}, tp=4).split("model.layers.0.self_attn.q_proj.weight")
    with pytest.raises(MftError, match="--ep 3"):
        Placer(metas, ep=3)


@pytest.fixture(scope="module")
def padded_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("padded")
    rng = np.random.default_rng(1)
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "lm_head.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "model.layers.0.mlp.down_proj.weight": rng.standard_normal((4, 8)).astype(np.float32),
        "model.layers.1.mlp.up_proj.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "model.norm.weight": rng.standard_normal(4).astype(np.float32),
        "step": np.array(3, dtype=np.int64),
    }
    save_file(tensors, str(d / "model.safetensors"))
    return d, tensors


def test_vocab_padding_round_trips(tmp_path, padded_model):
    src, tensors = padded_model
    reshard(src, tmp_path / "tp4", tp=4)
    r3 = load_file(str(tmp_path / "tp4" / "model-tp03-pp00-ep00.safetensors"))
    emb = r3["model.embed_tokens.weight"]
    assert emb.shape == (3, 4)
    np.testing.assert_array_equal(emb[0], tensors["model.embed_tokens.weight"][9])
    assert not emb[1:].any()  # padding rows are zero
    # tp4 -> tp2 -> full: the padding never leaks into the data.
    reshard(tmp_path / "tp4", tmp_path / "tp2", tp=2)
    full = load_full(tmp_path / "tp2")
    for k, v in tensors.items():
        np.testing.assert_array_equal(full[k], v, err_msg=k)


@pytest.mark.parametrize("src_par,dst_par", [((2, 1, 1), (4, 1, 1)), ((4, 1, 1), (2, 2, 1)), ((2, 2, 1), (1, 1, 1)),
                                             ((1, 1, 2), (2, 1, 4)), ((2, 1, 4), (1, 2, 1))])
def test_load_rank_from_a_different_layout(tmp_path, src_par, dst_par):
    ref = original("qwen3_moe")
    src = tmp_path / "src"
    reshard(os.path.join(FIX, "qwen3_moe"), src, *src_par)
    tp, pp, ep = dst_par
    metas = {k: ("F32", list(v.shape)) for k, v in ref.items()}
    pl = Placer(metas, tp, pp, ep)
    seen = set()
    for tp_i in range(tp):
        for pp_i in range(pp):
            for ep_i in range(ep):
                got = load_rank(src, tp, pp, ep, tp_i, pp_i, ep_i)
                for name, arr in got.items():
                    seen.add(name)
                    axis, padded = pl.split(name)
                    np.testing.assert_array_equal(arr, expected_shard(ref[name], axis, padded, tp, tp_i), err_msg=name)
                    assert pl.stage(name) == pp_i
    assert seen == set(ref)


def test_hand_written_uneven_layout(tmp_path):
    # A layout no plan would produce: one tensor in 3 uneven column pieces across two files.
    w = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    save_file({"w": w[:2], "b": np.ones(2, np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({"w": w[2:6]}, str(tmp_path / "b.safetensors"))
    save_file({"w": w[6:]}, str(tmp_path / "c.safetensors"))
    pieces = [{"rank": 0, "file": "a.safetensors", "offset": [0, 0], "shape": [2, 3]},
              {"rank": 1, "file": "b.safetensors", "offset": [2, 0], "shape": [4, 3]},
              {"rank": 2, "file": "c.safetensors", "offset": [6, 0], "shape": [1, 3]}]
    layout = {"format": "mft-checkpoint-layout", "version": 1, "parallel": {"dp": 1, "tp": 3, "pp": 1, "ep": 1}, "tensors": {
        "w": {"shape": [7, 3], "dtype": "F32", "split_axis": 0, "pieces": pieces},
        "b": {"shape": [2], "dtype": "F32", "split_axis": None, "pieces": [{"rank": 0, "file": "a.safetensors", "offset": [0], "shape": [2]}]}}}
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    np.testing.assert_array_equal(load_full(tmp_path)["w"], w)
    # A missing piece is an error naming the tensor, and no output appears.
    layout["tensors"]["w"]["pieces"] = pieces[:2]
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    with pytest.raises(MftError, match='"w".*cover 18 of the 21'):
        load_full(tmp_path)
    with pytest.raises(MftError, match='"w".*cover'):
        reshard(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    # A piece whose file disagrees with the layout names the file and tensor.
    layout["tensors"]["w"]["pieces"] = [dict(pieces[0], shape=[3, 3], file="a.safetensors")] + pieces[1:]
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    with pytest.raises(MftError, match=r'a\.safetensors: tensor "w": file has F32 \[2, 3\]'):
        load_full(tmp_path)


def test_hf_export_with_shard_limit_matches_transformers_names(tmp_path):
    src = os.path.join(FIX, "mixtral")
    ref_header = read_header(os.path.join(src, "model.safetensors"))[0]
    split = tmp_path / "split"
    reshard(src, split, tp=2, ep=2)
    out = tmp_path / "hf"
    reshard(split, out, max_shard_size="200KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(glob.glob(str(out / "model-*-of-*.safetensors")))
    assert len(shards) > 1 and all(os.path.getsize(s) < 200_000 + 20_000 for s in shards)
    assert set(index["weight_map"]) == set(ref_header)
    total = 0
    for shard in shards:
        loaded = hf_st.load_file(shard)  # the PyPI library reads our shards
        for name, arr in loaded.items():
            assert index["weight_map"][name] == os.path.basename(shard)
            assert list(arr.shape) == ref_header[name]["shape"]
            total += arr.nbytes
    assert index["metadata"]["total_size"] == total
    assert (out / "config.json").exists() and (out / "layout.json").exists()
    # And the export reads back as a checkpoint (index-based layout).
    ref = original("mixtral")
    got = load_full(out)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_training_checkpoint_layout_is_a_source(tmp_path, padded_model):
    src, tensors = padded_model
    ck = tmp_path / "step"
    ck.mkdir()
    save_file(tensors, str(ck / "model.safetensors"))
    save_file({"exp_avg.x": np.zeros(2, np.float32)}, str(ck / "optimizer.safetensors"))
    (ck / "layout.json").write_text(json.dumps(single_rank_layout(str(ck / "model.safetensors"))))
    got = load_rank(ck, tp=2, tp_rank=1)
    np.testing.assert_array_equal(got["model.layers.0.mlp.down_proj.weight"], tensors["model.layers.0.mlp.down_proj.weight"][:, 4:])


def test_reshard_converts_dtype(tmp_path, padded_model):
    from mft import _native

    src, tensors = padded_model
    reshard(src, tmp_path / "bf16", tp=2, dtype="BF16")
    full = load_full(tmp_path / "bf16")
    w = tensors["model.layers.0.mlp.up_proj.weight"]
    want = _native.float_convert(w.reshape(-1).view(np.uint8), "F32", "BF16").view("<u2").reshape(w.shape)
    np.testing.assert_array_equal(full["model.layers.0.mlp.up_proj.weight"], want)
    assert full["step"].dtype == np.int64  # integers keep their dtype


def test_cli_reshard_and_inspect(tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "mft.cli.main", "weights"]
    r = subprocess.run(cmd + ["reshard", os.path.join(FIX, "llama"), str(out), "--tp", "2", "--pp", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(subprocess.run(cmd + ["inspect", str(out), "--json"], capture_output=True, text=True, check=True).stdout)
    assert info["layout"]["parallel"]["tp"] == 2 and len(info["files"]) == 4
    assert info["total"]["parameters"] > sum(v.size for v in original("llama").values()) * 0.5
    r = subprocess.run(cmd + ["reshard", os.path.join(FIX, "llama"), str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "not empty" in r.stderr
