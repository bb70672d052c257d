"""Image-text SFT: `mft data preprocess --format sft` with images, and `mft train` on a tiny LLaVA
(tests/fixtures/vlm/llava) with the bundled shapes set (data/vlm/), parts frozen or trainable."""

from __future__ import annotations

import json
import os
import shutil

import mindspore as ms
import numpy as np
import pytest

from mft.config import load_config
from mft.data.indexed import IndexedDataset
from mft.data.sft import mask_prefix, preprocess_sft
from mft.data.sft_images import images_path
from mft.errors import MftError
from mft.models.checkpoint_io import read_weights
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(REPO, "tests", "fixtures", "vlm", "llava")
TOKENIZER = os.path.join(MODEL, "tokenizer.json")
QWEN = os.path.join(REPO, "tests", "fixtures", "vlm", "qwen2_5_vl")
SHAPES = os.path.join(REPO, "data", "vlm", "shapes.jsonl")
RECIPE = os.path.join(REPO, "configs", "llava", "tiny_sft.yaml")
IMAGE_ID = 3  # the fixture's <image>
ms.set_device("CPU")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm_sft")
    stats = preprocess_sft([SHAPES], Tokenizer.from_file(TOKENIZER), str(root / "shapes"), chat_template="chatml")
    # Qwen2.5-VL's placeholder token is <|image_pad|> (id 5); <image> in the data becomes it
    preprocess_sft([SHAPES], Tokenizer.from_file(os.path.join(QWEN, "tokenizer.json")), str(root / "qshapes"),
                   chat_template="chatml", image_token="<|image_pad|>")
    return {"root": root, "prefix": str(root / "shapes"), "qwen_prefix": str(root / "qshapes"), "stats": stats}


def test_preprocess_stores_one_image_token_per_image_and_a_sidecar(data):
    records = [json.loads(l) for l in open(SHAPES, encoding="utf-8")]
    assert data["stats"].conversations == len(records) == data["stats"].with_images == 40
    tokens, masks = IndexedDataset(data["prefix"]), IndexedDataset(mask_prefix(data["prefix"]))
    entries = [json.loads(l) for l in open(images_path(data["prefix"]), encoding="utf-8")]
    for i, (rec, entry) in enumerate(zip(records, entries)):
        want = rec.get("images") or [rec["image"]]
        assert entry["images"] == [os.path.join(REPO, "data", "vlm", p) for p in want]
        assert entry["source"] == f"{SHAPES}:{i + 1}"
        ids, mask = np.asarray(tokens[i]), np.asarray(masks[i])
        assert int((ids == IMAGE_ID).sum()) == len(want)
        assert not mask[ids == IMAGE_ID].any() and mask.any()


def test_missing_image_is_file_line_and_image_dir_and_parts(tmp_path):
    shutil.copy(os.path.join(REPO, "data", "vlm", "images", "000_red_square.png"), tmp_path / "x.png")
    good = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
                         {"role": "assistant", "content": "A red square."}], "image": "x.png"}
    bad = dict(good, image="nope.png")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    tok = Tokenizer.from_file(TOKENIZER)
    with pytest.raises(MftError, match=rf"in.jsonl:2: image 'nope.png' not found"):
        preprocess_sft([str(src)], tok, str(tmp_path / "o"), chat_template="chatml")
    stats = preprocess_sft([str(src)], tok, str(tmp_path / "o"), chat_template="chatml", skip_bad=True)
    assert (stats.conversations, stats.skipped_bad, stats.with_images) == (1, 1, 1)
    # --image-dir: paths relative to another folder; a placeholder count that disagrees is a bad record
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    (sub / "in.jsonl").write_text(json.dumps(dict(good, images=["x.png"])) + "\n")
    with pytest.raises(MftError, match=r"elsewhere/in.jsonl:1: has both 'image' and 'images'"):
        preprocess_sft([str(sub / "in.jsonl")], tok, str(tmp_path / "p"), chat_template="chatml", image_dir=str(tmp_path))
    two = {"conversations": [{"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "A."}], "images": ["x.png", "x.png"]}
    (sub / "in.jsonl").write_text(json.dumps(two) + "\n")
    with pytest.raises(MftError, match=r"in.jsonl:1: 1 <image> placeholder\(s\) but 2 image\(s\)"):
        preprocess_sft([str(sub / "in.jsonl")], tok, str(tmp_path / "p"), chat_template="chatml", image_dir=str(tmp_path))
    two["conversations"][0]["value"] = "<image><image> what?"
    (sub / "in.jsonl").write_text(json.dumps(two) + "\n")
    stats = preprocess_sft([str(sub / "in.jsonl")], tok, str(tmp_path / "p"), chat_template="chatml", image_dir=str(tmp_path))
    assert json.loads(open(images_path(str(tmp_path / "p"))).read())["images"] == [str(tmp_path / "x.png")] * 2


def config(data, out, *overrides, model=MODEL, prefix="prefix"):
    return load_config(RECIPE, [f"data.prefix={data[prefix]}", f"run.output_dir={out}", f"tokenizer.path={model}/tokenizer.json",
                                f"model.pretrained={model}", "train.steps=2", "train.micro_batch_size=2", "monitor.log_every=1",
                                "train.lr_schedule.warmup_steps=0", "train.optimizer.lr=0.005", *overrides])


def parts(folder):
    tensors, _ = read_weights(folder)
    groups = {"vision": {}, "projector": {}, "language": {}}
    for name, value in tensors.items():
        # LLaVA's file names, then Qwen2.5-VL's (visual.merger is its projector)
        key = ("projector" if "multi_modal_projector" in name or name.startswith("visual.merger.") else
               "vision" if "vision_tower" in name or name.startswith("visual.") else "language")
        groups[key][name] = value
    return groups


def changed(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [n for n in a if not np.array_equal(a[n], b[n])]


def test_train_llava_full_with_frozen_tower_and_qwen_projector_only(data, tmp_path):
    from mft.training.trainer import train

    base = parts(MODEL)
    out = train(config(data, tmp_path / "full"), echo=lambda *a: None)
    assert out["last_loss"] < out["first_loss"]
    after = parts(out["checkpoint"])
    assert changed(base["vision"], after["vision"]) == []  # finetune.vision_tower: frozen
    assert len(changed(base["projector"], after["projector"])) == len(base["projector"])
    assert changed(base["language"], after["language"])
    assert os.path.isfile(os.path.join(out["checkpoint"], "processor_config.json"))  # loads with images like its base

    # projector-only pre-alignment, on Qwen2.5-VL (images of their own size: image_grid_thw per image):
    # only the merger moves, and the loss still falls
    base = parts(QWEN)
    out = train(config(data, tmp_path / "align", "finetune.language_model=frozen", "model.arch=qwen2_5_vl", model=QWEN,
                       prefix="qwen_prefix"), echo=lambda *a: None)
    assert out["last_loss"] < out["first_loss"]
    after = parts(out["checkpoint"])
    assert base["vision"] and changed(base["vision"], after["vision"]) == [] and changed(base["language"], after["language"]) == []
    assert len(changed(base["projector"], after["projector"])) == len(base["projector"])


def test_validation_on_held_out_image_conversations(data, tmp_path):
    """data.split + monitor.eval_every on image-text data: val_loss over fixed held-out conversations
    with their images, equal to the loss the model gives those rows directly (no update between)."""
    from mft.finetune.train_setup import inputs_labels
    from mft.finetune.vlm_batches import VlmLossModel, vlm_stream
    from mft.models.auto import AutoModelForCausalLM
    from mft.monitor.metrics import read_metrics
    from mft.training.evaluate import split_streams
    from mft.training.loss import causal_lm_loss
    from mft.training.trainer import train

    cfg = config(data, tmp_path / "val", "data.split=3,1,0", "monitor.eval_every=2", "monitor.eval_batches=2")
    out = train(cfg, echo=lambda *a: None)
    rows = [r for r in read_metrics(str(tmp_path / "val" / "metrics.jsonl")) if "val_loss" in r]
    assert [r["step"] for r in rows] == [2]
    # the same held-out rows through the trained checkpoint, outside the trainer
    indexed = IndexedDataset(data["prefix"])
    _, valid = split_streams(indexed, cfg)
    stream = vlm_stream(cfg, indexed, valid.documents, IndexedDataset(mask_prefix(data["prefix"])))
    model = AutoModelForCausalLM.from_pretrained(out["checkpoint"])
    wrapper = VlmLossModel(model)
    stream.bind(wrapper)
    ids, labels = inputs_labels(stream.rank_batch(0, 2, 2))
    losses = [float(causal_lm_loss(wrapper(ms.Tensor(ids[a])), ms.Tensor(labels[a])).asnumpy()) for a in range(2)]
    assert (labels != -100).any() and (ids == IMAGE_ID).any()  # targets, and images in the held-out rows
    assert rows[0]["val_loss"] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    assert set(valid.documents).isdisjoint(split_streams(indexed, cfg)[0].documents)


def test_lora_targets_the_language_model_only(data, tmp_path):
    from mft.finetune.train_setup import apply_finetune
    from mft.models import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(MODEL)
    apply_finetune(config(data, tmp_path / "l", "finetune.method=lora", "finetune.vision_tower=trainable"), model)
    trainable = [p.name for p in model.trainable_params()]
    lora = [n for n in trainable if ".lora_" in n]
    assert lora and all("language_model" in n for n in lora)
    assert not [n for n in trainable if "language_model" in n and ".lora_" not in n]  # LoRA: base stays frozen
    assert any("vision_tower" in n for n in trainable) and any("multi_modal_projector" in n for n in trainable)


def test_corrupt_image_at_training_time_names_the_record(data, tmp_path):
    from mft.finetune.vlm_batches import vlm_stream

    img = tmp_path / "c.png"
    shutil.copy(os.path.join(REPO, "data", "vlm", "images", "000_red_square.png"), img)
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"image": "c.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                                   {"from": "gpt", "value": "A red square."}]}) + "\n")
    preprocess_sft([str(src)], Tokenizer.from_file(TOKENIZER), str(tmp_path / "c"), chat_template="chatml")
    img.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = config({"prefix": str(tmp_path / "c")}, tmp_path / "run")
    stream = vlm_stream(cfg, IndexedDataset(str(tmp_path / "c")), None, IndexedDataset(mask_prefix(str(tmp_path / "c"))))
    with pytest.raises(MftError, match=rf"c.jsonl:1: image {img} cannot be read"):
        stream.rank_batch(0, 1, 1)
    with pytest.raises(MftError, match=r"run.mode=graph: .*set run.mode=pynative"):
        vlm_stream(config(data, tmp_path / "g", "run.mode=graph"), IndexedDataset(data["prefix"]), None, None)


def test_vision_keys_refused_on_a_text_model(data, tmp_path):
    from mft.finetune.vlm_freeze import check_keys
    from mft.models import AutoModelForCausalLM

    text = AutoModelForCausalLM.from_config({"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
                                             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2})
    with pytest.raises(MftError, match=r"finetune.vision_tower=trainable: only vision-language models"):
        check_keys(config(data, tmp_path / "t", "finetune.vision_tower=trainable"), text)
