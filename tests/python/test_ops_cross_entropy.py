"""The fused causal-LM cross-entropy (mft.ops.cross_entropy) against the composed reference:
loss and gradient in PyNative and in a compiled graph, ignored labels, a bad label, and a
train step with model.fused_cross_entropy."""

import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, ops

from mft.ops.cross_entropy import IGNORE_INDEX, cross_entropy

ms.set_device("CPU")


def case(rows, vocab, seed, ignored=(3,)):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((rows, vocab))).astype(np.float32)
    labels = rng.integers(0, vocab, rows).astype(np.int32)
    labels[list(ignored)] = IGNORE_INDEX
    return Tensor(logits), Tensor(labels)


def loss_and_grad(fused, logits, labels):
    return ms.value_and_grad(lambda x: cross_entropy(x, labels, fused))(logits)


@pytest.mark.parametrize("rows,vocab", [(8, 5), (12, 37), (6, 1000)])
def test_matches_the_composed_loss_and_gradient(rows, vocab):
    logits, labels = case(rows, vocab, rows)
    want_loss, want_grad = loss_and_grad(False, logits, labels)
    got_loss, got_grad = loss_and_grad(True, logits, labels)
    np.testing.assert_allclose(got_loss.asnumpy(), want_loss.asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(got_grad.asnumpy(), want_grad.asnumpy(), rtol=1e-5, atol=1e-6)  # p - 1 cancels near 1
    assert not got_grad.asnumpy()[3].any()  # the ignored row gets no gradient


def test_in_a_compiled_graph_and_all_ignored():
    logits, labels = case(10, 64, 1)
    def fused_loss(x, y):
        return cross_entropy(x, y, True)

    step = ms.jit(ms.value_and_grad(fused_loss))
    loss, grad = step(logits, labels)
    want_loss, want_grad = loss_and_grad(False, logits, labels)
    np.testing.assert_allclose(loss.asnumpy(), want_loss.asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(grad.asnumpy(), want_grad.asnumpy(), rtol=1e-5, atol=1e-6)
    none = Tensor(np.full(10, IGNORE_INDEX, np.int32))
    loss, grad = step(logits, none)
    assert float(loss.asnumpy()) == 0.0 and not grad.asnumpy().any()


def test_a_label_outside_the_vocabulary_fails():
    logits, labels = case(4, 9, 2, ignored=())
    bad = labels.asnumpy().copy()
    bad[2] = 9
    with pytest.raises(RuntimeError, match="MftCrossEntropyForward"):
        cross_entropy(logits, Tensor(bad), True).asnumpy()


def test_train_step_with_model_fused_cross_entropy():
    from mft.config import load_config
    from mft.models import AutoModelForCausalLM
    from mft.training.model_factory import runtime_overrides
    from mft.training.optim.adamw import AdamW
    from mft.training.train_step import TrainStep

    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64}
    ids = (np.arange(2 * 17).reshape(1, 2, 17) * 5 % 64).astype(np.int32)
    labels = ids[:, :, 1:].copy()
    labels[0, 1, :4] = IGNORE_INDEX  # an SFT-style masked prompt
    losses = {}
    for fused in (False, True):
        ms.set_seed(0)
        model = AutoModelForCausalLM.from_config(hf, fused_cross_entropy=fused)
        step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1), 1.0, 1)
        losses[fused] = [step.step(ids[:, :, :-1], labels, 1e-2)[0] for _ in range(3)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny", "demo.yaml")
    assert runtime_overrides(load_config(demo)).get("fused_cross_entropy") is True  # on where the kernels run
    assert "fused_cross_entropy" not in runtime_overrides(load_config(demo, ["model.fused_cross_entropy=false"]))
