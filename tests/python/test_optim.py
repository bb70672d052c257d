"""Optimizers (AdamW, Muon, Adafactor) against independent numpy implementations.

Each MindSpore optimizer runs as a Cell inside a compiled GRAPH_MODE graph
for several steps with changing lr; the numpy versions below are written
from the algorithms' definitions (float64), not from the MindSpore code.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import mindspore as ms
from mindspore import Parameter, Tensor, nn

from mft.config import load_config
from mft.config.schema import AdafactorConfig, OptimizerConfig
from mft.errors import ConfigError
from mft.training.optim import build_optimizer
from mft.training.optim.rules import decays, uses_muon

ms.set_device("CPU")

# name -> shape: a small decoder's kinds of parameters
SHAPES = {
    "model.embed_tokens.weight": (6, 4),
    "model.layers.0.input_layernorm.weight": (4,),
    "model.layers.0.self_attn.o_proj.weight": (3, 5),
    "model.layers.0.mlp.up_proj.weight": (5, 3),
    "model.layers.0.mlp.up_proj.bias": (5,),
    "model.layers.0.mlp.experts.down_proj.weight": (2, 4, 3),
    "lm_head.weight": (6, 4),
}
LRS = [0.02, 0.015, 0.01, 0.005, 0.002]


class Apply(nn.Cell):
    """The optimizer called from a compiled cell, the way the train step calls it."""

    def __init__(self, opt):
        super().__init__(auto_prefix=False)
        self.opt = opt

    def construct(self, grads, lr):
        return self.opt(grads, lr)


def make_case(seed=0, steps=len(LRS)):
    rng = np.random.default_rng(seed)
    init = {n: rng.standard_normal(s).astype(np.float32) * 0.5 for n, s in SHAPES.items()}
    grads = [{n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()} for _ in range(steps)]
    return init, grads


def params_of(init):
    return [Parameter(Tensor(v.copy()), name=n) for n, v in init.items()]


def run_graph(opt, params, grads_per_step, lrs):
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        cell = Apply(opt)
        for grads, lr in zip(grads_per_step, lrs):
            cell(ms.mutable(tuple(Tensor(grads[p.name]) for p in params)), Tensor(lr, ms.float32))
        assert len(cell.compile_cache) == 1  # one graph whatever the lr
    finally:
        ms.set_context(mode=previous)
    return {p.name: p.asnumpy() for p in params}


def opt_cfg(**kw):
    return OptimizerConfig(**{"lr": 1.0, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, **kw})


# ---------------------------------------------------------------- numpy references


def np_adam(p, g, state, t, lr, b1, b2, eps, wd):
    m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)


def np_newton_schulz(u, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    if u.ndim == 3:
        return np.stack([np_newton_schulz(x, steps) for x in u])
    tall = u.shape[0] > u.shape[1]
    x = u.T if tall else u
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tall else x


def np_muon(p, g, state, lr, mu, wd, rms, ns_steps=5):
    buf = state["buf"] = mu * state.get("buf", 0.0) + g
    u = g + mu * buf
    o = np_newton_schulz(u, ns_steps)
    scale = rms * math.sqrt(max(p.shape[-2:]))
    return p * (1 - lr * wd) - lr * scale * o


def np_adafactor(p, g, state, t, lr, b1, b2_cap, decay_rate, eps, clip, wd):
    b2 = min(b2_cap, 1 - t ** (-decay_rate))
    g2 = g * g + eps * eps
    if p.ndim >= 2:
        r = state["r"] = b2 * state.get("r", 0.0) + (1 - b2) * g2.mean(axis=-1)
        c = state["c"] = b2 * state.get("c", 0.0) + (1 - b2) * g2.mean(axis=-2)
        v = r[..., :, None] * c[..., None, :] / r.mean(axis=-1)[..., None, None]
    else:
        v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g2
    u = g / np.sqrt(v)
    u = u / max(1.0, np.sqrt(np.mean(u * u)) / clip)
    if b1 > 0:
        u = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * u
    return p - lr * (u + wd * p)


def np_run(init, grads_per_step, lrs, update):
    """update(name, p, g, state, t, lr) -> new p, over all steps."""
    params = {n: v.astype(np.float64) for n, v in init.items()}
    states = {n: {} for n in init}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for n in params:
            params[n] = update(n, params[n], grads[n].astype(np.float64), states[n], t, lr)
    return params


def default_wd(name, wd=0.1):
    return wd if decays(name, SHAPES[name]) else 0.0


def assert_close(got, want, rtol, atol):
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=rtol, atol=atol, err_msg=n)


# ---------------------------------------------------------------- rules


def test_default_rules_spare_norms_biases_and_embeddings():
    assert [n for n in SHAPES if decays(n, SHAPES[n])] == [
        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.experts.down_proj.weight", "lm_head.weight",
    ]
    assert [n for n in SHAPES if uses_muon(n, SHAPES[n])] == [
        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.experts.down_proj.weight",
    ]


# ---------------------------------------------------------------- AdamW


def test_adamw_matches_numpy_with_param_groups():
    init, grads = make_case(1)
    groups = [{"pattern": r"o_proj", "lr_scale": 0.5, "weight_decay": 0.3}, {"pattern": r"layernorm", "weight_decay": 0.05}]
    params = params_of(init)
    opt = build_optimizer(opt_cfg(name="adamw", param_groups=groups), params)
    got = run_graph(opt, params, grads, LRS)

    def update(n, p, g, st, t, lr):
        scale, wd = 1.0, default_wd(n)
        if "o_proj" in n:
            scale, wd = 0.5, 0.3
        elif "layernorm" in n:
            wd = 0.05
        return np_adam(p, g, st, t, lr * scale, 0.9, 0.95, 1e-8, wd)

    assert_close(got, np_run(init, grads, LRS, update), rtol=1e-5, atol=1e-6)
    assert int(opt.step_count.asnumpy()) == len(LRS)
    assert set(opt.state_tensors()) == {"optimizer_step"} | {f"{k}.{n}" for n in SHAPES for k in ("exp_avg", "exp_avg_sq")}


def test_adamw_with_clipping_in_ms_jit_matches_numpy():
    from mindspore import ops

    from mft.training.optimizer import AdamW
    from mft.training.train_step import clip_by_global_norm

    rng = np.random.default_rng(0)
    init = {"w.weight": rng.standard_normal((4, 3)).astype(np.float32), "norm.weight": rng.standard_normal((3,)).astype(np.float32)}
    params = params_of(init)
    opt = AdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    grads = [{n: rng.standard_normal(v.shape).astype(np.float32) * 3 for n, v in init.items()} for _ in range(4)]
    lrs = [0.1, 0.05, 0.02, 0.01]

    @ms.jit
    def apply(g0, g1, lr):
        clipped, norm = clip_by_global_norm((g0, g1), 1.0)
        return ops.depend(norm, opt(clipped, lr))

    for g, lr in zip(grads, lrs):
        apply(Tensor(g["w.weight"]), Tensor(g["norm.weight"]), Tensor(lr, ms.float32))

    def clipped(gs):
        norm = math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in gs.values()))
        return {n: v * min(1.0, 1.0 / (norm + 1e-6)) for n, v in gs.items()}

    want = np_run(init, [clipped(g) for g in grads], lrs,
                  lambda n, p, g, st, t, lr: np_adam(p, g, st, t, lr, 0.9, 0.95, 1e-8, 0.1 if n == "w.weight" else 0.0))
    assert_close({p.name: p.asnumpy() for p in params}, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Muon


def test_newton_schulz_orthogonalises():
    from mft.training.optim.muon import newton_schulz

    @ms.jit
    def ns(t):
        return newton_schulz(t, 5, False)

    rng = np.random.default_rng(3)
    u = rng.standard_normal((16, 48)).astype(np.float32)
    x = ns(Tensor(u)).asnumpy()
    s = np.linalg.svd(x, compute_uv=False)
    assert 0.6 < s.min() and s.max() < 1.25  # the quintic pushes every singular value into ~[0.7, 1.2]
    np.testing.assert_allclose(x, np_newton_schulz(u.astype(np.float64), 5), atol=2e-4)


def test_muon_matches_numpy():
    init, grads = make_case(2)
    groups = [{"pattern": r"up_proj\.weight", "lr_scale": 2.0}]
    params = params_of(init)
    cfg = opt_cfg(name="muon", param_groups=groups)
    opt = build_optimizer(cfg, params)
    got = run_graph(opt, params, grads, LRS)

    def update(n, p, g, st, t, lr):
        scale = 2.0 if n.endswith("up_proj.weight") else 1.0
        if uses_muon(n, SHAPES[n]):
            return np_muon(p, g, st, lr * scale, 0.95, default_wd(n), 0.2)
        return np_adam(p, g, st, t, lr * scale, 0.9, 0.95, 1e-8, default_wd(n))

    assert_close(got, np_run(init, grads, LRS, update), rtol=2e-4, atol=2e-5)
    muon_names = [n for n in SHAPES if uses_muon(n, SHAPES[n])]
    adam_names = [n for n in SHAPES if n not in muon_names]
    assert set(opt.state_tensors()) == (
        {"optimizer_step"} | {f"momentum.{n}" for n in muon_names} | {f"{k}.{n}" for n in adam_names for k in ("exp_avg", "exp_avg_sq")}
    )


def test_muon_update_has_the_configured_rms():
    """One step from zero momentum, lr 1, no decay: the change is scale * NS(G(1 + mu)), RMS ~ update_rms."""
    rng = np.random.default_rng(4)
    init = {"model.layers.0.mlp.down_proj.weight": np.zeros((32, 96), np.float32)}
    params = params_of(init)
    opt = build_optimizer(opt_cfg(name="muon", weight_decay=0.0), params)
    got = run_graph(opt, params, [{n: rng.standard_normal((32, 96)).astype(np.float32) for n in init}], [1.0])
    rms = float(np.sqrt(np.mean(got["model.layers.0.mlp.down_proj.weight"] ** 2)))
    assert 0.15 < rms < 0.25


# ---------------------------------------------------------------- Adafactor


@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_adafactor_matches_numpy(beta1):
    init, grads = make_case(5)
    params = params_of(init)
    opt = build_optimizer(opt_cfg(name="adafactor", betas=[beta1, 0.999]), params)
    got = run_graph(opt, params, grads, LRS)
    want = np_run(init, grads, LRS, lambda n, p, g, st, t, lr: np_adafactor(p, g, st, t, lr, beta1, 0.999, 0.8, 1e-8, 1.0, default_wd(n)))
    assert_close(got, want, rtol=1e-5, atol=1e-6)
    state = opt.state_tensors()
    assert state["exp_avg_sq_row.model.layers.0.mlp.experts.down_proj.weight"].shape == (2, 4)
    assert state["exp_avg_sq_col.model.layers.0.mlp.experts.down_proj.weight"].shape == (2, 3)
    assert state["exp_avg_sq.model.layers.0.input_layernorm.weight"].shape == (4,)
    assert ("exp_avg.lm_head.weight" in state) == (beta1 > 0)
    # memory-light: a matrix's second moment costs rows + cols (per stacked matrix), not rows * cols
    second = sum(int(np.prod(v.shape)) for k, v in state.items() if k.startswith("exp_avg_sq"))
    assert second == sum(s[0] if len(s) == 1 else int(np.prod(s[:-2])) * (s[-2] + s[-1]) for s in SHAPES.values())


def test_adafactor_clips_large_updates():
    """A first step has v = g^2 + eps^2, so |u| = 1 everywhere: RMS 1 -> with clip 0.5 the step is lr * 0.5."""
    init = {"w.weight": np.zeros((3, 4), np.float32)}
    params = params_of(init)
    g = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    opt = build_optimizer(opt_cfg(name="adafactor", betas=[0.0, 0.999], weight_decay=0.0, adafactor=AdafactorConfig(clip_threshold=0.5)), params)
    got = run_graph(opt, params, [{"w.weight": g}], [1.0])["w.weight"]
    want = np_run(init, [{"w.weight": g}], [1.0], lambda n, p, gg, st, t, lr: np_adafactor(p, gg, st, t, lr, 0.0, 0.999, 0.8, 1e-8, 0.5, 0.0))
    np.testing.assert_allclose(got, want["w.weight"], rtol=1e-5, atol=1e-6)
    assert float(np.sqrt(np.mean(got**2))) == pytest.approx(0.5, rel=0.05)


# ---------------------------------------------------------------- state, resume, groups


@pytest.mark.parametrize("name", ["adamw", "muon", "adafactor"])
def test_state_tensors_resume_bit_exactly(name):
    """Two steps, copy weights + state_tensors() into a fresh optimizer, three more == five straight."""
    init, grads = make_case(7)
    cfg = opt_cfg(name=name)
    straight = params_of(init)
    want = run_graph(build_optimizer(cfg, straight), straight, grads, LRS)

    first = params_of(init)
    opt1 = build_optimizer(cfg, first)
    mid = run_graph(opt1, first, grads[:2], LRS[:2])
    saved = {k: v.asnumpy().copy() for k, v in opt1.state_tensors().items()}
    second = params_of(mid)
    opt2 = build_optimizer(cfg, second)
    assert set(opt2.state_tensors()) == set(saved)
    for k, p in opt2.state_tensors().items():
        p.set_data(Tensor(saved[k], dtype=p.dtype))
    got = run_graph(opt2, second, grads[2:], LRS[2:])
    for n in want:
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)


def test_param_group_matching_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train.optimizer.param_groups\[1\].pattern.*'attn_typo' matches no trainable parameter"):
        build_optimizer(opt_cfg(param_groups=[{"pattern": "norm", "weight_decay": 0.0}, {"pattern": "attn_typo", "lr_scale": 2.0}]), params_of(make_case()[0]))


# ---------------------------------------------------------------- config errors


MINIMAL = {"run": {"output_dir": "out"}, "tokenizer": {"path": "tok.json"}, "data": {"prefix": "d"}}


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.optimizer.lr=-0.001", "key 'train.optimizer.lr' must be a finite number > 0, got -0.001"),
        ("train.optimizer.name=sgd", "key 'train.optimizer.name' must be one of adamw, muon, adafactor, got 'sgd'"),
        ("train.optimizer.betas=[0.9, 1.0]", "key 'train.optimizer.betas' must be two numbers [beta1, beta2], each in [0, 1), got [0.9, 1.0]"),
        ("train.optimizer.betas=[-0.1, 0.9]", "each in [0, 1)"),
        ("train.optimizer.betas=[0.9]", "must be two numbers"),
        ("train.optimizer.eps=0", "key 'train.optimizer.eps' must be a finite number > 0"),
        ("train.optimizer.weight_decay=-1", "key 'train.optimizer.weight_decay' must be a finite number >= 0"),
        ("train.optimizer.param_groups=[{pattern: '(norm', lr_scale: 2}]", "key 'train.optimizer.param_groups[0].pattern' is not a valid regular expression"),
        ("train.optimizer.param_groups=[{pattern: norm, lr: 2}]", "key 'train.optimizer.param_groups[0].lr' is not a param-group key; allowed: pattern, lr_scale, weight_decay"),
        ("train.optimizer.param_groups=[{lr_scale: 2}]", "key 'train.optimizer.param_groups[0].pattern' is required"),
        ("train.optimizer.param_groups=[{pattern: norm, lr_scale: -1}]", "param_groups[0].lr_scale' must be a finite number >= 0"),
        ("train.optimizer.param_groups=[norm]", "param_groups[0]' must be a mapping"),
        ("train.optimizer.muon.ns_steps=0", "key 'train.optimizer.muon.ns_steps' must be an integer >= 1"),
        ("train.optimizer.muon.momentum=0.9", "key 'train.optimizer.muon.momentum' is read only by train.optimizer.name=muon (name is adamw)"),
        ("train.optimizer.adafactor.decay_rate=0", "key 'train.optimizer.adafactor.decay_rate' must be a number in (0, 1]"),
        ("train.optimizer.nesterov=true", "unknown key 'train.optimizer.nesterov'"),
    ],
)
def test_bad_optimizer_keys_are_config_errors(tmp_path, override, needle):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError) as e:
        load_config(str(path), [override])
    assert needle in str(e.value)
    assert str(e.value).startswith(f"--set {override.split('=')[0].split('[')[0]}")


def test_optimizer_keys_in_a_file_are_named_with_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "train": {"optimizer": {"name": "muon", "muon": {"momentum": 1.5}}}}))
    with pytest.raises(ConfigError, match=rf"^{path}: key 'train.optimizer.muon.momentum' must be a number in \[0, 1\), got 1.5"):
        load_config(str(path))
    path.write_text(yaml.safe_dump({**MINIMAL, "train": {"optimizer": {"name": "muon", "muon": {"momentum": 0.9}, "param_groups": [{"pattern": "lm_head", "lr_scale": 0.5}]}}}))
    cfg = load_config(str(path))
    assert cfg.train.optimizer.muon.momentum == 0.9 and cfg.train.optimizer.param_groups[0]["lr_scale"] == 0.5


def test_bad_hyperparameter_through_the_cli_writes_nothing(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "run": {"output_dir": str(out)}}))
    for override in ("train.optimizer.lr=-1", "train.lr_schedule.warmup_steps=500", "train.optimizer.name=lion"):
        proc = subprocess.run([sys.executable, "-m", "mft", "train", str(path), "--set", override], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert override.split("=")[0] in proc.stderr and "Traceback" not in proc.stderr
        assert not os.path.exists(out)


# ---------------------------------------------------------------- in the real train step


def tiny_llama(seed=3):
    from mft.models import AutoModelForCausalLM
    from mft.training.model_factory import init_weights

    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 8, "hidden_act": "silu", "max_position_embeddings": 64, "initializer_range": 0.02,
          "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32"}
    model = AutoModelForCausalLM.from_config(hf)
    init_weights(model, seed, 0.02)
    return model


@pytest.mark.parametrize("name", ["muon", "adafactor"])
def test_train_step_learns_and_resumes_bit_exactly(name):
    """Six compiled train steps on a tiny Llama; steps 4-6 rerun from a snapshot of the
    weights and state_tensors() taken after step 3, in fresh objects, are identical."""
    from mft.training.train_step import TrainStep

    ids = (np.arange(8 * 17).reshape(8, 17) * 7 % 64).astype(np.int32)  # a learnable cyclic pattern
    inputs, labels = ids[None, :, :-1], ids[None, :, 1:]
    cfg = opt_cfg(name=name, lr=0.01)
    lrs = [0.01, 0.01, 0.008, 0.006, 0.004, 0.002]

    model = tiny_llama()
    opt = build_optimizer(cfg, model.trainable_params())
    step = TrainStep(model, opt, None, 1)
    losses = [step.step(inputs, labels, lr)[0] for lr in lrs[:3]]
    weights = {k: v.copy() for k, v in model.hf_state_dict().items()}  # asnumpy may share memory with the parameter
    state = {k: p.asnumpy().copy() for k, p in opt.state_tensors().items()}
    losses += [step.step(inputs, labels, lr)[0] for lr in lrs[3:]]
    assert losses[-1] < losses[0] - 0.2

    resumed = tiny_llama(seed=99)
    resumed.load_hf_state_dict(weights, "step 3")
    opt2 = build_optimizer(cfg, resumed.trainable_params())
    for k, p in opt2.state_tensors().items():
        p.set_data(Tensor(state[k], dtype=p.dtype))
    step2 = TrainStep(resumed, opt2, None, 1)
    assert [step2.step(inputs, labels, lr)[0] for lr in lrs[3:]] == losses[3:]
    final = resumed.hf_state_dict()
    for k, v in model.hf_state_dict().items():
        np.testing.assert_array_equal(final[k], v, err_msg=k)
