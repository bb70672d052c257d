"""LLaVA against transformers (tests/fixtures/vlm, made by tests/fixtures/make_vlm_fixtures.py):
the processor's ids and pixels, forward logits (< 1e-4) and greedy tokens on image+text
prompts (two image sizes, two images in one prompt), for a Llama LLaVA-1.5 shape and a
tied Qwen2 with the class token kept and two feature layers; loading/saving names; errors."""

import json
import os

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.auto import load_processor
from mft.models.llava.config import LlavaConfig
from mft.models.llava.image_processor import ClipImageProcessor
from mft.weights.safetensors import load_file

ms.set_device("CPU")
ms.runtime.launch_blocking()  # as `mft generate` runs: PyNative forwards much faster on a busy CPU
VLM = os.path.join(os.path.dirname(__file__), "..", "fixtures", "vlm")
NAMES = ["llava", "llava_qwen2_full"]
CASES = ["one_a", "one_b", "two"]


@pytest.fixture(scope="module", params=NAMES)
def vlm(request):
    folder = os.path.join(VLM, request.param)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with open(os.path.join(folder, "cases.json")) as f:
        cases = json.load(f)
    return request.param, folder, model, np.load(os.path.join(folder, "reference.npz")), cases


def test_processor_ids_and_pixels_equal_transformers(vlm):
    _, folder, model, ref, cases = vlm
    processor = load_processor(folder, model.config)
    for case in CASES:
        images = [os.path.join(folder, p) for p in cases[case]["images"]]
        ids, pixels = processor(cases[case]["prompt"], images)
        np.testing.assert_array_equal(ids, ref[f"{case}_input_ids"], err_msg=case)
        assert pixels.dtype == np.float32 and pixels.shape == ref[f"{case}_pixel_values"].shape
        assert np.abs(pixels - ref[f"{case}_pixel_values"]).max() <= 1e-6, case
    assert (ids == model.config.image_token_index).sum() == 2 * model.config.image_tokens_per_image


@pytest.mark.parametrize("case", CASES)
def test_logits_match_transformers(vlm, case):
    name, _, model, ref, _ = vlm
    logits = model(ref[f"{case}_input_ids"], ref[f"{case}_pixel_values"]).asnumpy()
    assert logits.shape == ref[f"{case}_logits"].shape
    diff = np.abs(logits - ref[f"{case}_logits"]).max()
    assert diff < 1e-4, f"{name}/{case}: max |logits - reference| = {diff}"


def test_images_change_the_logits(vlm):
    _, _, model, ref, _ = vlm
    ids, pixels = ref["two_input_ids"], ref["two_pixel_values"]
    swapped = model(ids, pixels[::-1].copy()).asnumpy()
    assert np.abs(swapped - ref["two_logits"]).max() > 1e-2  # image order reaches the text positions


def test_greedy_with_cache_matches_transformers():
    """Two images in one prompt; the other model's greedy run is the CLI test below (each costs a decode-graph compile)."""
    folder = os.path.join(VLM, "llava")
    model = AutoModelForCausalLM.from_pretrained(folder)
    ref = np.load(os.path.join(folder, "reference.npz"))
    prompt = ref["two_input_ids"]
    out = model.generate(prompt, max_new_tokens=ref["two_greedy"].shape[1] - prompt.shape[1], pixel_values=ref["two_pixel_values"])
    np.testing.assert_array_equal(out, ref["two_greedy"])


def test_save_pretrained_writes_transformers_names_and_reloads(vlm, tmp_path):
    _, folder, model, ref, _ = vlm
    model.save_pretrained(str(tmp_path))
    theirs = load_file(os.path.join(folder, "model.safetensors"))
    ours = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for name, arr in theirs.items():
        np.testing.assert_array_equal(ours[name], arr, err_msg=name)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert LlavaConfig.from_hf_dict(saved) == model.config


def test_older_spellings_load_the_same_weights(tmp_path):
    """Module names, and the CLIP tower nested under vision_model (llava-hf before transformers 5)."""
    folder = os.path.join(VLM, "llava")
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    renamed = {}
    for name, arr in tensors.items():
        if name.startswith("vision_tower."):
            name = "vision_tower.vision_model." + name[len("vision_tower."):]
        elif name.startswith("language_model.model."):
            name = "model.language_model." + name[len("language_model.model."):]
        renamed[name] = arr
    other = AutoModelForCausalLM.from_config(model.config)
    other.load_hf_state_dict(renamed, "renamed")
    for (n1, p1), (_, p2) in zip(model.parameters_and_names(), other.parameters_and_names()):
        np.testing.assert_array_equal(p1.asnumpy(), p2.asnumpy(), err_msg=n1)
    renamed["language_model.model.norm.weight"] = renamed["model.language_model.norm.weight"]
    with pytest.raises(MftError, match="same weight under two spellings"):
        other.load_hf_state_dict(renamed, "twice")


def test_image_token_count_must_match_the_images():
    folder = os.path.join(VLM, "llava")
    model = AutoModelForCausalLM.from_pretrained(folder)
    ref = np.load(os.path.join(folder, "reference.npz"))
    with pytest.raises(MftError, match="32 image tokens but 1 image"):
        model(ref["two_input_ids"], ref["two_pixel_values"][:1])
    with pytest.raises(MftError, match="no images were given"):
        model(ref["two_input_ids"])
    with pytest.raises(MftError, match=r"pixel_values must be \(num_images, 3, 32, 32\)"):
        model(ref["one_a_input_ids"], np.zeros((1, 3, 24, 24), np.float32))
    processor = load_processor(folder, model.config)
    with pytest.raises(MftError, match="2 <image> placeholder"):
        processor("<image><image> hi", [os.path.join(VLM, "images", "a.png")])


def test_bad_config_and_images_are_named(tmp_path):
    with open(os.path.join(VLM, "llava", "config.json")) as f:
        raw = json.load(f)
    for key, value, named in [
        ("vision_feature_select_strategy", "cls", "vision_feature_select_strategy"),
        ("vision_feature_layer", 7, "vision_feature_layer"),
        ("image_token_index", 5000, "image_token_index"),
        ("use_fancy_projector", True, "use_fancy_projector"),
    ]:
        bad = dict(raw, **{key: value})
        with pytest.raises(MftError, match=f"x/config.json: {named}="):
            LlavaConfig.from_hf_dict(bad, source="x/config.json")
    bad = json.loads(json.dumps(raw))
    bad["vision_config"]["hidden_act"] = "swish"
    with pytest.raises(MftError, match="vision_config: hidden_act='swish'"):
        LlavaConfig.from_hf_dict(bad, source="x/config.json")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(MftError, match="broken.png: cannot decode image"):
        ClipImageProcessor()([str(broken)])
    with pytest.raises(MftError, match="missing.png: image file not found"):
        ClipImageProcessor()([str(tmp_path / "missing.png")])


def test_text_model_refuses_images():
    folder = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "qwen2")
    model = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(MftError, match="reads no images.*llava"):
        load_processor(folder, model.config)


def test_cli_generate_with_image_prints_the_transformers_continuation(capsys):
    from mft.cli.main import main
    from mft.tokenizer import Tokenizer

    folder = os.path.join(VLM, "llava_qwen2_full")
    ref = np.load(os.path.join(folder, "reference.npz"))
    with open(os.path.join(folder, "cases.json")) as f:
        case = json.load(f)["two"]
    images = [os.path.join(folder, p) for p in case["images"]]
    argv = ["generate", "--model", folder, "--prompt", case["prompt"], "--max-new-tokens", "12", "--no-echo"]
    for path in images:
        argv += ["--image", path]
    assert main(argv) == 0
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    new = ref["two_greedy"][0, ref["two_input_ids"].shape[1]:].tolist()
    assert 1 not in new  # the fixture's continuation has no eos, so the CLI prints all 12
    assert capsys.readouterr().out == tok.decode(new) + "\n"
    assert main(["generate", "--model", folder, "--prompt", "hi", "--image", "/nonexistent.png"]) == 2
    assert "--image /nonexistent.png: no such file" in capsys.readouterr().err


def test_fused_attention_in_the_vision_tower_matches_transformers():
    """model.fused_attention: CLIP's attention runs mft's C++ kernel bidirectionally (float32)."""
    folder = os.path.join(VLM, "llava")
    ref = np.load(os.path.join(folder, "reference.npz"))
    fused = AutoModelForCausalLM.from_pretrained(folder, fused_attention=True)
    assert all(layer.self_attn.fused for layer in fused.model.vision_tower.encoder.layers)
    logits = fused(ref["two_input_ids"], ref["two_pixel_values"]).asnumpy()
    assert np.abs(logits - ref["two_logits"]).max() < 1e-4
