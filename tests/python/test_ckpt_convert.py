"""MindSpore .ckpt <-> safetensors through MindSpore's checkpoint API."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mft.errors import MftError
from mft.weights.ckpt import convert
from mft.weights.safetensors import load_file, read_header

LLAMA = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama", "model.safetensors")


def test_round_trip_f32_and_bf16(tmp_path):
    import mindspore as ms

    ref = load_file(LLAMA)
    convert(LLAMA, str(tmp_path / "m.ckpt"))
    params = ms.load_checkpoint(str(tmp_path / "m.ckpt"))  # MindSpore itself reads our file
    assert set(params) == set(ref)
    np.testing.assert_array_equal(params["lm_head.weight"].asnumpy(), ref["lm_head.weight"])
    convert(str(tmp_path / "m.ckpt"), str(tmp_path / "back.safetensors"))
    back = load_file(str(tmp_path / "back.safetensors"))
    assert all(np.array_equal(back[k], ref[k]) for k in ref)

    convert(LLAMA, str(tmp_path / "b.safetensors"), dtype="BF16")
    convert(str(tmp_path / "b.safetensors"), str(tmp_path / "b.ckpt"))
    assert ms.load_checkpoint(str(tmp_path / "b.ckpt"))["lm_head.weight"].dtype == ms.bfloat16
    convert(str(tmp_path / "b.ckpt"), str(tmp_path / "b2.safetensors"))
    assert read_header(str(tmp_path / "b2.safetensors"))[0]["lm_head.weight"]["dtype"] == "BF16"
    a, b = load_file(str(tmp_path / "b.safetensors"), widen_bf16=False), load_file(str(tmp_path / "b2.safetensors"), widen_bf16=False)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f]


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MftError, match="bad.ckpt"):
        convert(str(bad), str(tmp_path / "x.safetensors"))
    assert not (tmp_path / "x.safetensors").exists()
    convert(LLAMA, str(tmp_path / "f8.safetensors"), dtype="F8_E4M3")
    with pytest.raises(MftError, match="F8_E4M3"):
        convert(str(tmp_path / "f8.safetensors"), str(tmp_path / "f8.ckpt"))
    with pytest.raises(MftError, match="expected"):
        convert(LLAMA, str(tmp_path / "x.bin"))


def test_cli_convert(tmp_path):
    out = tmp_path / "m.ckpt"
    r = subprocess.run([sys.executable, "-m", "mft.cli.main", "weights", "convert", LLAMA, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "21 tensors" in r.stdout
