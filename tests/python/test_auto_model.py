"""AutoModelForCausalLM: family dispatch, save/load round trips, sharded folders, checked loading."""

import json
import os
import shutil

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.llama import LlamaConfig, LlamaForCausalLM
from mft.weights.safetensors import load_file, read_header, save_file

ms.set_device("CPU")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")
IDS = np.load(os.path.join(FIXTURE, "reference.npz"))["input_ids"][:, :12]


def logits(model, ids=IDS):
    return model(ms.Tensor(ids)).asnumpy()


def copy_config(dst):
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(FIXTURE, "config.json"), dst)


def test_save_pretrained_round_trip_gives_identical_logits(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    out = tmp_path / "saved"
    model.save_pretrained(str(out))
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors"]
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    np.testing.assert_array_equal(logits(reloaded), logits(model))
    # Same tensor names, shapes and dtypes as the transformers-written file.
    ours, _, _ = read_header(str(out / "model.safetensors"))
    theirs, _, _ = read_header(os.path.join(FIXTURE, "model.safetensors"))
    assert {k: (v["dtype"], v["shape"]) for k, v in ours.items()} == {k: (v["dtype"], v["shape"]) for k, v in theirs.items()}
    for name, arr in load_file(os.path.join(FIXTURE, "model.safetensors")).items():
        np.testing.assert_array_equal(load_file(str(out / "model.safetensors"))[name], arr)
    saved = json.loads((out / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"] and saved["num_key_value_heads"] == 2


def test_sharded_folder_loads_like_single_file(tmp_path):
    tensors = load_file(os.path.join(FIXTURE, "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    copy_config(tmp_path)
    weight_map = {}
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, str(tmp_path / shard))
        weight_map.update({n: shard for n in members})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    sharded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(logits(sharded), logits(AutoModelForCausalLM.from_pretrained(FIXTURE)))


def test_index_naming_a_missing_shard_is_an_error(tmp_path):
    copy_config(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"model.norm.weight": "gone.safetensors"}}))
    with pytest.raises(MftError, match="gone.safetensors"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))


def test_folder_without_weights_names_the_folder(tmp_path):
    copy_config(tmp_path)
    with pytest.raises(MftError) as e:
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "model.safetensors" in str(e.value)


def test_folder_without_config_names_the_folder(tmp_path):
    with pytest.raises(MftError, match="config.json"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))


def test_unknown_architecture_lists_supported_ones(tmp_path):
    cfg = json.loads(open(os.path.join(FIXTURE, "config.json")).read())
    cfg["architectures"], cfg["model_type"] = ["GPTNeoXForCausalLM"], "gpt_neox"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MftError) as e:
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert "GPTNeoXForCausalLM" in str(e.value) and "LlamaForCausalLM" in str(e.value) and "llama" in str(e.value)


def write_tensors(folder, tensors):
    copy_config(folder)
    save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize("case", ["missing", "unexpected", "shape"])
def test_bad_checkpoint_is_rejected_and_nothing_is_loaded(tmp_path, case):
    tensors = load_file(os.path.join(FIXTURE, "model.safetensors"))
    if case == "missing":
        del tensors["model.layers.1.mlp.up_proj.weight"]
        expect = ["missing tensor model.layers.1.mlp.up_proj.weight", "(128, 64)"]
    elif case == "unexpected":
        tensors["model.layers.0.extra.weight"] = np.zeros((3,), np.float32)
        expect = ["unexpected tensor model.layers.0.extra.weight", "(3,)"]
    else:
        tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((16, 64), np.float32)
        expect = ["model.layers.0.self_attn.k_proj.weight", "(16, 64)", "(32, 64)"]
    write_tensors(tmp_path, tensors)
    with pytest.raises(MftError) as e:
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    for text in expect:
        assert text in str(e.value)
    # Loading into an existing model checks everything before assigning anything.
    model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    before = model.hf_state_dict()
    with pytest.raises(MftError):
        model.load_hf_state_dict(tensors, "bad")
    for name, arr in model.hf_state_dict().items():
        np.testing.assert_array_equal(arr, before[name])


def tiny_config(**kw):
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, max_position_embeddings=64)
    base.update(kw)
    return LlamaConfig(**base)


@pytest.mark.parametrize("kw", [dict(tie_word_embeddings=True), dict(attention_bias=True, mlp_bias=True, num_key_value_heads=1)])
def test_config_variants_round_trip(tmp_path, kw):
    ms.set_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(**kw))
    assert isinstance(model, LlamaForCausalLM)
    # Give biases non-zero values so a dropped bias would show in the logits.
    for name, p in model.parameters_and_names():
        if name.endswith(".bias"):
            p.set_data(ms.Tensor(np.random.default_rng(1).normal(size=p.shape).astype(np.float32)))
    model.save_pretrained(str(tmp_path))
    names = set(read_header(str(tmp_path / "model.safetensors"))[0])
    if kw.get("tie_word_embeddings"):
        assert "lm_head.weight" not in names
    else:
        assert {"model.layers.0.self_attn.o_proj.bias", "model.layers.1.mlp.down_proj.bias"} <= names
        assert read_header(str(tmp_path / "model.safetensors"))[0]["model.layers.0.self_attn.k_proj.weight"]["shape"] == [8, 32]
    ids = np.arange(10).reshape(1, 10) % 96
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(logits(reloaded, ids), logits(model, ids))
    assert reloaded.config == model.config


def test_tied_checkpoint_may_carry_lm_head(tmp_path):
    model = AutoModelForCausalLM.from_config(tiny_config(tie_word_embeddings=True))
    tensors = model.hf_state_dict()
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    model.load_hf_state_dict(tensors)  # accepted: the head is the embedding


def test_from_config_accepts_hf_dict():
    d = tiny_config().to_hf_dict()
    model = AutoModelForCausalLM.from_config(d)
    assert isinstance(model, LlamaForCausalLM) and model.config == tiny_config()
    out = logits(model, np.zeros((2, 5), np.int64))
    assert out.shape == (2, 5, 96) and out.dtype == np.float32


def test_generated_checkpoint_is_readable_by_safetensors_library(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model = AutoModelForCausalLM.from_config(tiny_config())
    model.save_pretrained(str(tmp_path))
    theirs = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    ours = model.hf_state_dict()
    assert set(theirs) == set(ours)
    for name in ours:
        np.testing.assert_array_equal(theirs[name], ours[name])
