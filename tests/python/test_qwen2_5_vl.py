"""Qwen2.5-VL against transformers (tests/fixtures/vlm/qwen2_5_vl, made by
tests/fixtures/make_vlm_fixtures.py): processor ids, patches and grids; M-RoPE
positions; forward logits (< 1e-4) over windowed + full-attention vision blocks,
two image sizes and two images in one prompt; greedy tokens through the processor
and the KV cache (decode at slot + delta); saved names; errors."""

import json
import os

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.auto import load_processor
from mft.models.qwen2_5_vl.config import Qwen2_5_VLConfig
from mft.models.qwen2_5_vl.image_processor import smart_resize
from mft.models.qwen2_5_vl.model import rope_index
from mft.models.qwen2_5_vl.vision import window_index
from mft.weights.safetensors import load_file

ms.set_device("CPU")
ms.runtime.launch_blocking()  # as `mft generate` runs: PyNative forwards much faster on a busy CPU
FOLDER = os.path.join(os.path.dirname(__file__), "..", "fixtures", "vlm", "qwen2_5_vl")
CASES = ["one_a", "one_b", "two"]


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FOLDER)


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FOLDER, "reference.npz"))


@pytest.fixture(scope="module")
def cases():
    with open(os.path.join(FOLDER, "cases.json")) as f:
        return json.load(f)


def test_processor_equals_transformers(model, ref, cases):
    processor = load_processor(FOLDER, model.config)
    for case in CASES:
        images = [os.path.join(FOLDER, p) for p in cases[case]["images"]]
        ids, pixels, grids = processor(cases[case]["prompt"], images)
        np.testing.assert_array_equal(ids, ref[f"{case}_input_ids"], err_msg=case)
        np.testing.assert_array_equal(grids, ref[f"{case}_image_grid_thw"], err_msg=case)
        assert pixels.shape == ref[f"{case}_pixel_values"].shape
        assert np.abs(pixels - ref[f"{case}_pixel_values"]).max() <= 1e-6, case
    assert ref["two_image_grid_thw"].tolist() == [[1, 4, 6], [1, 4, 4]]  # two sizes in one prompt


def test_mrope_positions_equal_transformers(model, ref):
    for case in CASES:
        pos, delta = rope_index(ref[f"{case}_input_ids"], model.config.image_token_id, ref[f"{case}_image_grid_thw"], 2)
        np.testing.assert_array_equal(pos, ref[f"{case}_position_ids"], err_msg=case)
        assert delta[0] == pos.max() + 1 - pos.shape[-1] < 0


def test_smart_resize_and_windows():
    assert smart_resize(40, 48, 16, 256, 4096) == (32, 48)  # round half to even, as Python's round
    assert smart_resize(500, 20, 16, 256, 4096) == (320, 16)  # too many pixels: scaled down
    assert smart_resize(10, 10, 16, 1024, 4096) == (32, 32)  # too few: scaled up
    order, cu = window_index([(1, 4, 6)], 2, 32, 8)  # merged grid 2x3, windows of 2x2 merged tokens
    assert order.tolist() == [0, 1, 3, 4, 2, 5] and cu.tolist() == [0, 16, 24]


@pytest.mark.parametrize("case", CASES)
def test_logits_match_transformers(model, ref, case):
    logits = model(ref[f"{case}_input_ids"], ref[f"{case}_pixel_values"], ref[f"{case}_image_grid_thw"]).asnumpy()
    diff = np.abs(logits - ref[f"{case}_logits"]).max()
    assert diff < 1e-4, f"{case}: max |logits - reference| = {diff}"


def test_greedy_from_the_processor_matches_transformers(model, ref, cases):
    processor = load_processor(FOLDER, model.config)
    spec = cases["two"]
    ids, inputs = processor.model_inputs(spec["prompt"], [os.path.join(FOLDER, p) for p in spec["images"]])
    out = model.generate(ids, max_new_tokens=ref["two_greedy"].shape[1] - ids.shape[1], **inputs)
    np.testing.assert_array_equal(out, ref["two_greedy"])


def test_save_pretrained_writes_transformers_names(model, tmp_path):
    model.save_pretrained(str(tmp_path))
    theirs = load_file(os.path.join(FOLDER, "model.safetensors"))
    ours = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for name, arr in theirs.items():
        np.testing.assert_array_equal(ours[name], arr, err_msg=name)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert Qwen2_5_VLConfig.from_hf_dict(saved) == model.config


def test_errors_name_what_is_wrong(model, ref):
    with open(os.path.join(FOLDER, "config.json")) as f:
        raw = json.load(f)
    bad = json.loads(json.dumps(raw))
    bad["text_config"]["rope_parameters"]["mrope_section"] = [2, 2, 2]
    with pytest.raises(MftError, match="mrope_section"):
        Qwen2_5_VLConfig.from_hf_dict(bad, source="x/config.json")
    bad = json.loads(json.dumps(raw))
    bad["vision_config"]["fullatt_block_indexes"] = [5]
    with pytest.raises(MftError, match="x/config.json: vision_config: fullatt_block_indexes"):
        Qwen2_5_VLConfig.from_hf_dict(bad, source="x/config.json")
    with pytest.raises(MftError, match="image_grid_thw"):
        model(ref["one_a_input_ids"], ref["one_a_pixel_values"])
    with pytest.raises(MftError, match=r"pixel_values must be \(sum of t\*h\*w over image_grid_thw = 40, 384\)"):
        model(ref["two_input_ids"], ref["one_a_pixel_values"], ref["two_image_grid_thw"])
    with pytest.raises(MftError, match="grid \\(1, 4, 4\\) needs 4 image tokens, the prompt has a run of 6"):
        model(ref["two_input_ids"], ref["two_pixel_values"], ref["two_image_grid_thw"][::-1])


def test_fused_attention_in_the_vision_tower_matches_transformers(ref):
    """model.fused_attention: the vision blocks run mft's C++ kernel bidirectionally per window /
    image (cumulative run ends instead of an (S, S) mask); logits stay within 1e-4 of transformers."""
    fused = AutoModelForCausalLM.from_pretrained(FOLDER, fused_attention=True)
    assert fused.visual.fused and all(block.attn.fused for block in fused.visual.blocks)
    for case in ("one_b", "two"):  # two image sizes; two images (windowed and full-attention blocks)
        logits = fused(ref[f"{case}_input_ids"], ref[f"{case}_pixel_values"], ref[f"{case}_image_grid_thw"]).asnumpy()
        diff = np.abs(logits - ref[f"{case}_logits"]).max()
        assert diff < 1e-4, f"{case}: max |logits - reference| = {diff}"
