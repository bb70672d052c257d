"""The one-kernel clip + AdamW (mft.ops.clip_adamw, csrc/kernels/clip_adamw.cc).

Against a float64 numpy AdamW with global-norm clipping, written from the
algorithm's definition; against mft's composed path (clip_by_global_norm +
AdamW.construct); a non-finite gradient writes nothing; a train step with the
fused update gives the composed step's losses; and the config key resolves as
documented.
"""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Parameter, Tensor, nn

from mft.config.schema import OptimizerConfig
from mft.errors import ConfigError
from mft.training.optim import build_optimizer
from mft.training.train_step import clip_and_update

ms.set_device("CPU")

SHAPES = {
    "model.embed_tokens.weight": (11, 8),
    "model.layers.0.input_layernorm.weight": (8,),
    "model.layers.0.self_attn.o_proj.weight": (8, 8),
    "model.layers.0.mlp.up_proj.weight": (4099, 3),  # crosses the kernel's 4096-element blocks
    "lm_head.weight": (11, 8),
}
LRS = [0.02, 0.01, 0.005]
GROUPS = [{"pattern": r"o_proj", "lr_scale": 0.5, "weight_decay": 0.3}]


def opt_cfg(**kw):
    return OptimizerConfig(**{"lr": 1.0, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "param_groups": GROUPS, **kw})


class Update(nn.Cell):
    """One clip + update the way the train step's cells call it."""

    def __init__(self, opt, max_norm, fused):
        super().__init__(auto_prefix=False)
        self.opt = opt
        self.max_norm = max_norm
        self.hyper = opt.fused_hyper(max_norm) if fused else None

    def construct(self, grads, lr):
        return clip_and_update(self.opt, grads, lr, self.max_norm, None, self.hyper)


def run(fused, grads_per_step, max_norm, seed=0):
    rng = np.random.default_rng(seed)
    params = [Parameter(Tensor(rng.standard_normal(s).astype(np.float32)), name=n) for n, s in SHAPES.items()]
    opt = build_optimizer(opt_cfg(fused=fused), params, "CPU")
    assert opt.fused == fused
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        cell = Update(opt, max_norm, fused)
        norms = [float(cell(ms.mutable(tuple(Tensor(g[n]) for n in SHAPES)), Tensor(lr, ms.float32)).asnumpy())
                 for g, lr in zip(grads_per_step, LRS)]
    finally:
        ms.set_context(mode=previous)
    state = {k: v.asnumpy() for k, v in opt.state_tensors().items()}
    return {p.name: p.asnumpy() for p in params}, norms, state


def numpy_adamw(grads_per_step, max_norm, seed=0):
    rng = np.random.default_rng(seed)
    p = {n: rng.standard_normal(s).astype(np.float32).astype(np.float64) for n, s in SHAPES.items()}
    m = {n: 0.0 for n in SHAPES}
    v = {n: 0.0 for n in SHAPES}
    b1, b2, eps = 0.9, 0.95, 1e-8
    norms = []
    for t, (grads, lr) in enumerate(zip(grads_per_step, LRS), start=1):
        g64 = {n: grads[n].astype(np.float64) for n in SHAPES}
        norm = np.sqrt(sum((g * g).sum() for g in g64.values()))
        norms.append(norm)
        scale = min(1.0, max_norm / (norm + 1e-6)) if max_norm else 1.0
        for n in SHAPES:
            lr_n = lr * (0.5 if "o_proj" in n else 1.0)
            wd = 0.3 if "o_proj" in n else (0.1 if n.endswith("proj.weight") or n == "lm_head.weight" else 0.0)
            g = g64[n] * scale
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            upd = (m[n] / (1 - b1**t)) / (np.sqrt(v[n] / (1 - b2**t)) + eps)
            p[n] = p[n] - lr_n * (upd + wd * p[n])
    return p, norms


def gradients(scale=1.0, seed=1):
    rng = np.random.default_rng(seed)
    return [{n: (scale * rng.standard_normal(s)).astype(np.float32) for n, s in SHAPES.items()} for _ in LRS]


@pytest.mark.parametrize("max_norm", [1.0, None, 1e6], ids=["clipped", "no-clip", "under-threshold"])
def test_fused_update_matches_numpy_adamw(max_norm):
    grads = gradients()
    got, norms, state = run(True, grads, max_norm)
    want, want_norms = numpy_adamw(grads, max_norm)
    np.testing.assert_allclose(norms, want_norms, rtol=1e-6)
    for n in SHAPES:
        np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=2e-6, err_msg=n)
    assert int(state["optimizer_step"]) == len(LRS)


def test_fused_update_equals_composed_path():
    grads = gradients()
    fused, fused_norms, fused_state = run(True, grads, 1.0)
    composed, composed_norms, composed_state = run(False, grads, 1.0)
    np.testing.assert_allclose(fused_norms, composed_norms, rtol=1e-6)
    for k in composed_state:  # same state names, so checkpoints do not care which path wrote them
        np.testing.assert_allclose(fused_state[k], composed_state[k], rtol=1e-5, atol=1e-7, err_msg=k)
    for n in SHAPES:
        np.testing.assert_allclose(fused[n], composed[n], rtol=1e-5, atol=1e-6, err_msg=n)


def test_non_finite_gradient_writes_nothing():
    grads = gradients()
    grads[1]["model.layers.0.mlp.up_proj.weight"][7, 1] = np.nan
    got, norms, state = run(True, grads[:2], 1.0)
    before, _, before_state = run(True, grads[:1], 1.0)
    assert np.isfinite(norms[0]) and np.isnan(norms[1])
    assert int(state["optimizer_step"]) == 1  # the skipped step did not count
    for n in SHAPES:
        np.testing.assert_array_equal(got[n], before[n], err_msg=n)
    for k in state:
        np.testing.assert_array_equal(state[k], before_state[k], err_msg=k)


def test_config_resolution():
    params = [Parameter(Tensor(np.ones(s, np.float32)), name=n) for n, s in SHAPES.items()]
    assert build_optimizer(opt_cfg(), params, "CPU").fused  # null: on where the kernels run
    assert build_optimizer(opt_cfg(), params).fused  # device None: MindSpore's current target (CPU here)
    assert not build_optimizer(opt_cfg(), params, "Ascend").fused  # null where mft's kernels do not run: composed
    assert not build_optimizer(opt_cfg(fused=False), params, "CPU").fused
    with pytest.raises(ConfigError, match="train.optimizer.fused.*'muon'"):
        build_optimizer(opt_cfg(name="muon", fused=True), params, "CPU")
    with pytest.raises(ConfigError, match="train.optimizer.fused.*'Ascend'"):
        build_optimizer(opt_cfg(fused=True), params, "Ascend")
    half = [Parameter(Tensor(np.ones(s, np.float16)), name=n) for n, s in SHAPES.items()]
    assert not build_optimizer(opt_cfg(), half, "CPU").fused  # the kernel is fp32: composed update


def test_train_step_losses_match_composed():
    from mft.models import AutoModelForCausalLM
    from mft.models.llama import LlamaConfig
    from mft.training.train_step import TrainStep

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 64, size=(2, 2, 16)).astype(np.int32)
    losses = {}
    for fused in (False, True):
        for accum in (1, 2):
            ms.set_seed(0)
            model = AutoModelForCausalLM.from_config(LlamaConfig(
                vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=2, max_position_embeddings=32))
            opt = build_optimizer(opt_cfg(param_groups=[], fused=fused), model.trainable_params(), "CPU")
            step = TrainStep(model, opt, 0.5, accum)
            assert step._fused.fused_update == fused if accum == 1 else step._apply.fused_update == fused
            x = ids if accum == 2 else ids[:1]
            losses[fused, accum] = [step.step(x, x, 1e-2) for _ in range(4)]
    for accum in (1, 2):
        np.testing.assert_allclose(losses[True, accum], losses[False, accum], rtol=1e-5)


def test_global_norm_kernel_in_a_graph_matches_float64():
    """The clip norm of the composed update (Muon, Adafactor, fused: false): one fixed-order kernel for float32
    gradients, the composed reduction otherwise."""
    from mft.training.train_step import global_norm

    grads = tuple(Tensor(g) for g in gradients(3.0)[0].values())
    want = np.sqrt(sum((g.asnumpy().astype(np.float64) ** 2).sum() for g in grads))

    @ms.jit
    def norm(g):
        return global_norm(g)

    got = norm(grads)
    np.testing.assert_allclose(float(got.asnumpy()), want, rtol=1e-6)
    half = tuple(g.astype(ms.float16) for g in grads)
    got16 = norm(half)
    np.testing.assert_allclose(float(got16.asnumpy()), want, rtol=1e-3)
