"""Fused RoPE (csrc/kernels/rope.cc) against the model's apply functions
(mft.models.common.rope): both layouts, shared and per-row positions, YaRN
scaled cos/sin, forward and gradient, PyNative and ms.jit, bad shapes."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mft.errors import MftError
from mft.models.common.rope import RotaryEmbedding
from mft.ops.rope import apply_rotary, apply_rotary_reference

ms.set_device("CPU")
RNG = np.random.default_rng(3)
B, N, S, D = 2, 3, 5, 8


def numpy_rope(x, cos, sin, interleaved):
    if interleaved:
        x = x.reshape(x.shape[:-1] + (D // 2, 2)).swapaxes(-1, -2).reshape(x.shape)
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    return x * cos + rot * sin


@pytest.fixture(scope="module")
def inputs():
    x = Tensor(RNG.standard_normal((B, N, S, D)).astype(np.float32))
    shared = RotaryEmbedding("default", D, 10000.0)(Tensor(np.arange(S, dtype=np.int32)))
    per_row = RotaryEmbedding("yarn", D, 10000.0, {"factor": 4.0, "original_max_position_embeddings": 4})(
        Tensor(RNG.integers(0, 50, (B, S)).astype(np.int32)))
    return x, {"shared": shared, "per_row_yarn": per_row}


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("which", ["shared", "per_row_yarn"])
def test_rope_forward_and_grad(inputs, which, interleaved):
    x, table = inputs
    cos, sin = table[which]
    out = apply_rotary(x, cos, sin, interleaved=interleaved)
    ref = apply_rotary_reference(x, cos, sin, interleaved=interleaved)
    np.testing.assert_allclose(out.asnumpy(), ref.asnumpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.asnumpy(), numpy_rope(x.asnumpy(), cos.asnumpy(), sin.asnumpy(), interleaved),
                               rtol=1e-5, atol=1e-6)
    dout = Tensor(RNG.standard_normal((B, N, S, D)).astype(np.float32))
    got = ms.grad(lambda a: (apply_rotary(a, cos, sin, interleaved) * dout).sum())(x)
    want = ms.grad(lambda a: (apply_rotary(a, cos, sin, interleaved, fused=False) * dout).sum())(x)
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-6)


def test_rope_in_jit(inputs):
    x, table = inputs
    cos, sin = table["shared"]

    def loss(a):
        return (apply_rotary(a, cos, sin, True) ** 2 * 0.5 + apply_rotary(a, cos, sin, False)).sum()

    def ref_loss(a):
        return (apply_rotary(a, cos, sin, True, fused=False) ** 2 * 0.5 + apply_rotary(a, cos, sin, False, fused=False)).sum()

    value, grad = ms.jit(ms.value_and_grad(loss))(x)
    want_value, want_grad = ms.value_and_grad(ref_loss)(x)
    np.testing.assert_allclose(value.asnumpy(), want_value.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(grad.asnumpy(), want_grad.asnumpy(), rtol=1e-5, atol=1e-6)


def test_rope_bad_shapes(inputs):
    x, table = inputs
    cos, sin = table["shared"]
    with pytest.raises(MftError, match="cos and sin"):
        apply_rotary(x[:, :, :4], cos, sin)
    with pytest.raises(MftError, match="float32"):
        apply_rotary(x.astype(ms.float16), cos, sin)


def test_model_fused_rope_switch_trains_like_the_composed_rope():
    """model.fused_rope: every (non-MLA) attention layer runs the kernel; a compiled train step's
    losses match the composed rope's, and the recipe default turns it on where the kernels run."""
    import os

    from mft.config import load_config
    from mft.models import AutoModelForCausalLM
    from mft.models.common.attention import Attention
    from mft.training.model_factory import runtime_overrides
    from mft.training.optim.adamw import AdamW
    from mft.training.train_step import TrainStep

    hf = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 64, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 8, "max_position_embeddings": 64, "tie_word_embeddings": False}
    ids = (np.arange(2 * 17).reshape(1, 2, 17) * 5 % 64).astype(np.int32)
    losses = {}
    for fused in (False, True):
        ms.set_seed(0)
        model = AutoModelForCausalLM.from_config(hf, fused_rope=fused)
        attn = [c for _, c in model.cells_and_names() if isinstance(c, Attention)]
        assert len(attn) == 2 and all(a.fused_rope == fused for a in attn)
        step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1), 1.0, 1)
        losses[fused] = [step.step(ids[:, :, :-1], ids[:, :, 1:], 1e-2)[0] for _ in range(3)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny", "demo.yaml")
    assert runtime_overrides(load_config(demo)).get("fused_rope") is True  # CPU, fp32, kernels built: on by default
    assert "fused_rope" not in runtime_overrides(load_config(demo, ["train.precision=bf16"]))  # the kernel is float32
