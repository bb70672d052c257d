"""Packed SFT (finetune.packing): whole conversations per row, no attention across them.

The loss and gradients of one packed row equal the sums over the same
conversations run one by one, through the composed attention and through the
fused C++ kernel (segment ids -> cumulative ends); the packed stream is a
function of the sample index (exact resume). `mft train` on packed rows runs in
test_sft_recipes.py (the tiny recipes pack).
"""

from __future__ import annotations

import json
import os

import mindspore as ms
import numpy as np
import pytest
import yaml

from mft.config import load_config
from mft.data.sft_packing import PackedSftSamples, build_row
from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.llama import LlamaConfig
from mft.training.loss import IGNORE_INDEX, causal_lm_loss

ms.set_device("CPU")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LENGTHS = (7, 11, 5)
SEQ = 32


def conversations(seed=0):
    rng = np.random.default_rng(seed)
    convs = [rng.integers(1, 96, n).astype(np.int32) for n in LENGTHS]
    masks = [(rng.random(n) < 0.6).astype(np.uint8) for n in LENGTHS]
    for m in masks:
        m[1] = 1  # every conversation has a target
    return convs, masks


@pytest.fixture(scope="module")
def models():
    """The same tiny GQA weights with the composed attention and with the fused kernel."""
    ms.set_seed(0)
    kw = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)
    composed = AutoModelForCausalLM.from_config(LlamaConfig(**kw))
    fused = AutoModelForCausalLM.from_config(LlamaConfig(**kw, fused_attention=True))
    fused.load_hf_state_dict(composed.hf_state_dict(), "composed")
    return composed, fused


def summed_loss_and_grads(model, inputs, labels):
    """Sum (not mean) of the target tokens' NLL, and its gradients w.r.t. every parameter."""
    n = float((labels != IGNORE_INDEX).sum())
    params = model.trainable_params()

    def fn(x, y):
        return causal_lm_loss(model(x), y) * n

    loss, grads = ms.value_and_grad(fn, None, params)(ms.Tensor(inputs), ms.Tensor(labels))
    return float(loss.asnumpy()), [g.asnumpy() for g in grads]


def one_by_one(model, convs, masks):
    """Each conversation as its own sequence (input ids[:-1], labels ids[1:] masked). They run as one
    right-padded batch: under causal attention padding after a sequence cannot change it, and the
    padding's labels are -100."""
    width = max(len(c) for c in convs) - 1
    inputs = np.zeros((len(convs), width), np.int32)
    labels = np.full((len(convs), width), IGNORE_INDEX, np.int32)
    for i, (ids, mask) in enumerate(zip(convs, masks)):
        inputs[i, :len(ids) - 1] = ids[:-1]
        labels[i, :len(ids) - 1] = np.where(mask[1:] == 1, ids[1:], IGNORE_INDEX)
    return summed_loss_and_grads(model, inputs, labels)


def test_row_layout():
    convs, masks = conversations()
    inputs, labels = build_row(convs, masks, SEQ)
    assert inputs.shape == (3, SEQ) and labels.shape == (SEQ,)
    ends = np.cumsum(LENGTHS)
    assert np.array_equal(inputs[2], np.repeat([1, 2, 3, 0], [7, 11, 5, SEQ - ends[-1]]))
    assert list(inputs[1, :ends[-1]]) == list(range(7)) + list(range(11)) + list(range(5))
    for k, (a, n) in enumerate(zip([0, *ends[:-1]], LENGTHS)):
        assert np.array_equal(inputs[0, a:a + n], convs[k])
        expect = np.where(masks[k][1:] == 1, convs[k][1:], IGNORE_INDEX)
        assert np.array_equal(labels[a:a + n - 1], expect)
        assert labels[a + n - 1] == IGNORE_INDEX  # a conversation's last token predicts nothing (not the next one's first)
    assert np.all(labels[ends[-1]:] == IGNORE_INDEX)


@pytest.fixture(scope="module")
def reference():
    """Two packed rows with different segment layouts, and the sums over their six conversations run one by one."""
    (ca, ma), (cb, mb) = conversations(0), conversations(1)
    cb, mb = cb[::-1], mb[::-1]
    a, b = build_row(ca, ma, SEQ), build_row(cb, mb, SEQ)
    return np.stack([a[0], b[0]]), np.stack([a[1], b[1]]), (ca + cb, ma + mb)


@pytest.mark.parametrize("which", ["composed", "fused"])
def test_packed_rows_equal_conversations_one_by_one(models, reference, which):
    inputs, labels, (convs, masks) = reference
    model = models[0] if which == "composed" else models[1]
    packed_loss, packed_grads = summed_loss_and_grads(model, inputs, labels)
    loss, grads = one_by_one(models[0], convs, masks)  # the reference: composed attention, unpacked
    assert abs(packed_loss - loss) <= 1e-5 * abs(loss), (packed_loss, loss)
    worst = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12)) for a, b in zip(packed_grads, grads))
    assert worst < 1e-5, worst
    # the same rows without segments (one long sequence each) give another loss: cross-attention would show
    plain = inputs.copy()
    plain[:, 1] = np.arange(SEQ)
    plain[:, 2] = 1
    assert abs(float(causal_lm_loss(model(ms.Tensor(plain)), ms.Tensor(labels)).asnumpy()) * (labels != IGNORE_INDEX).sum()
               - loss) > 1e-3


# ---- the trainer on packed rows ---------------------------------------------------------------
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    from mft.data.sft import preprocess_sft
    from mft.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("packed")
    records, texts = [], []
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as f:
        for _, line in zip(range(2), f):
            chapter = json.loads(line)
            texts.append(chapter["text"])
            for verse in chapter["text"].splitlines()[:12]:
                num, _, words = verse.partition(" ")
                records.append({"instruction": f"Quote {chapter['id']}:{num}.", "output": " ".join(words.split()[:8])})
    tok = Tokenizer.train(texts + [json.dumps(r) for r in records], vocab_size=300, special_tokens=SPECIALS)
    tok.save(str(root / "tokenizer.json"))
    (root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    preprocess_sft([str(root / "sft.jsonl")], Tokenizer.from_file(str(root / "tokenizer.json")), str(root / "sft"),
                   chat_template="chatml")
    return root


def recipe(root, name, **sections):
    r = {
        "run": {"output_dir": str(root / name), "seed": 5},
        "tokenizer": {"path": str(root / "tokenizer.json")},
        "data": {"prefix": str(root / "sft"), "seq_len": 160},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2,
                  "max_position_embeddings": 256, "fused_attention": True},
        "train": {"steps": 6, "micro_batch_size": 2, "optimizer": {"lr": 1e-2}, "lr_schedule": {"warmup_steps": 1}},
        "finetune": {"packing": True},
        "checkpoint": {"every_steps": 0},
        "monitor": {"progress_bar": False, "tensorboard": False},
    }
    for key, value in sections.items():
        r.setdefault(key, {}).update(value)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return load_config(str(path))


def test_packed_stream_fewer_rows_than_one_conversation_per_row(sft):
    from mft.data.indexed import IndexedDataset
    from mft.data.sft import open_loss_mask

    ix = IndexedDataset(str(sft / "sft"))
    stream = PackedSftSamples(ix, 160, seed=5, mask=open_loss_mask(str(sft / "sft"), ix))
    lengths = np.asarray(ix.sequence_lengths)
    assert stream.samples_per_epoch <= len(ix) / 2  # one conversation per padded row would need len(ix) rows
    assert stream.padding_fraction < 1 - lengths.mean() / 160
    seen = sorted(d for r in stream.rows for d in r)
    assert seen == list(range(len(ix)))  # every conversation exactly once per epoch
    batch = stream.rank_batch(0, 2, 2)
    assert batch.inputs.shape == (2, 2, 3, 160) and batch.labels.shape == (2, 2, 160)
    assert batch.real_tokens == sum(int(lengths[d]) for i in range(4) for d in stream.rows[stream._row_index(i)])
    with pytest.raises(MftError, match="more than data.seq_len=8.*--max-length"):
        PackedSftSamples(ix, 8, seed=5)


def test_packed_stream_is_a_function_of_the_sample_index(sft):
    """Resume reads sample i again from a fresh stream: it must be the same row, across epochs too."""
    from mft.data.indexed import IndexedDataset

    ix = IndexedDataset(str(sft / "sft"))
    first, second = PackedSftSamples(ix, 160, seed=5), PackedSftSamples(ix, 160, seed=5)
    n = first.samples_per_epoch
    for start in (n + 1, 0, n - 1, 2 * n + 3):  # out of order, so each epoch's order is rebuilt
        a, b = first.rank_batch(start, 1, 2), second.rank_batch(start, 1, 2)
        assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.labels, b.labels)
    epoch0 = [first._row_index(i) for i in range(n)]
    epoch1 = [first._row_index(n + i) for i in range(n)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(n)) and epoch0 != epoch1


def test_packing_refuses_mtp(sft):
    from mft.data.indexed import IndexedDataset
    from mft.finetune.train_setup import with_loss_mask

    cfg = recipe(sft, "mtp")
    cfg.model.mtp_layers = 1
    with pytest.raises(MftError, match="mtp_layers"):
        with_loss_mask(cfg, IndexedDataset(str(sft / "sft")), type("S", (), {"documents": None})())
