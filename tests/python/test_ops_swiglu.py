"""The fused SwiGLU activation (mft.ops.swiglu) against silu(gate) * up: values and gradients in
PyNative and a compiled graph, and model.fused_swiglu in a train step (also under selective recompute)."""

import os

import numpy as np

import mindspore as ms
from mindspore import Tensor

from mft.ops.swiglu import swiglu

ms.set_device("CPU")


def inputs(shape, seed):
    rng = np.random.default_rng(seed)
    gate = (4 * rng.standard_normal(shape)).astype(np.float32)
    gate.flat[:2] = [60.0, -60.0]  # the sigmoid's saturated ends
    return Tensor(gate), Tensor(rng.standard_normal(shape).astype(np.float32)), Tensor(rng.standard_normal(shape).astype(np.float32))


def value_and_grads(fused, gate, up, weight):
    def f(g, u):
        return (swiglu(g, u, fused) * weight).sum()

    return ms.value_and_grad(f, grad_position=(0, 1))(gate, up)


def test_matches_the_composed_activation_and_its_gradients():
    for shape in [(3,), (2, 5, 37), (4, 1000)]:
        gate, up, weight = inputs(shape, len(shape))
        np.testing.assert_allclose(swiglu(gate, up).asnumpy(), swiglu(gate, up, False).asnumpy(), rtol=1e-5, atol=1e-6)
        (want, (wg, wu)) = value_and_grads(False, gate, up, weight)
        (got, (gg, gu)) = value_and_grads(True, gate, up, weight)
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5)
        np.testing.assert_allclose(gg.asnumpy(), wg.asnumpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gu.asnumpy(), wu.asnumpy(), rtol=1e-5, atol=1e-6)


def test_in_a_compiled_graph():
    gate, up, weight = inputs((8, 64), 7)

    def loss(g, u):
        return (swiglu(g, u, True) * weight).sum()

    got, (gg, gu) = ms.jit(ms.value_and_grad(loss, grad_position=(0, 1)))(gate, up)
    want, (wg, wu) = value_and_grads(False, gate, up, weight)
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(gg.asnumpy(), wg.asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gu.asnumpy(), wu.asnumpy(), rtol=1e-5, atol=1e-6)


def test_model_fused_swiglu_trains_like_the_composed_activation():
    from mft.config import load_config
    from mft.models import AutoModelForCausalLM
    from mft.models.common.mlp import SwiGLU
    from mft.training.model_factory import runtime_overrides
    from mft.training.optim.adamw import AdamW
    from mft.training.train_step import TrainStep

    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64}
    ids = (np.arange(2 * 17).reshape(1, 2, 17) * 5 % 64).astype(np.int32)
    losses = {}
    for fused, recompute in ((False, False), (True, False), (True, True)):
        ms.set_seed(0)
        model = AutoModelForCausalLM.from_config(hf, fused_swiglu=fused)
        acts = [c for _, c in model.cells_and_names() if isinstance(c, SwiGLU)]
        assert len(acts) == 2 and all(a.fused == fused for a in acts)
        if recompute:  # train.recompute=selective recomputes the activation cell in the backward
            for a in acts:
                a.recompute()
        step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1), 1.0, 1)
        losses[fused, recompute] = [step.step(ids[:, :, :-1], ids[:, :, 1:], 1e-2)[0] for _ in range(3)]
    np.testing.assert_allclose(losses[True, False], losses[False, False], rtol=1e-5)
    assert losses[True, True] == losses[True, False]  # recompute changes memory, not numbers
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny", "demo.yaml")
    assert runtime_overrides(load_config(demo)).get("fused_swiglu") is True  # CPU, fp32: on by default
    assert "fused_swiglu" not in runtime_overrides(load_config(demo, ["train.precision=bf16"]))
