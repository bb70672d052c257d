"""AdamW with decoupled weight decay, as a Cell the compiled step calls.

Our own rather than `nn.AdamWeightDecay` so that the learning rate is a step
input (no recompiles), the state (m, v, step) has stable names for
checkpoints, resume can restore it exactly, and each parameter can carry its
own lr multiplier and weight decay (param groups).
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from mft.ops import clip_adamw
from mft.training.optim.rules import decays


def adam_step_scalars(step, lr, beta1: float, beta2: float, eps: float):
    """Bias correction folded into the inputs of MindSpore's fused kernel.

    `ops.AdamWeightDecay` has no bias correction. With c = sqrt(1 - b2^t) / (1 - b1^t):
    m_hat / (sqrt(v_hat) + eps) == c * m / (sqrt(v) + eps * sqrt(1 - b2^t)),
    so the kernel gets lr * c and eps * sqrt(1 - b2^t), and a decay input of wd / c
    keeps the decoupled decay at lr * wd. Returns (lr * c, eps_t, c).
    """
    stepf = step.astype(ms.float32)
    root2 = ops.sqrt(1.0 - ops.pow(beta2, stepf))
    c = root2 / (1.0 - ops.pow(beta1, stepf))
    return lr * c, eps * root2, c


class AdamW(nn.Cell):
    """`construct(grads, lr)` updates `params` in place; `grads` in the same order.

    `lr_scales` / `weight_decays` (one per parameter) default to 1.0 and to
    `weight_decay` where `decays()` says so, else 0.

    `fused=True` adds `clip_update(grads, lr, hyper)`: clipping and the update
    of every tensor in one C++ kernel (mft.ops.clip_adamw), which train steps
    use where the gradient norm is local; `construct` stays the composed path.
    """

    def __init__(self, params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, lr_scales=None, weight_decays=None,
                 fused=False):
        super().__init__(auto_prefix=False)
        self.params = ParameterTuple(params)
        self.exp_avg = self.params.clone(prefix="exp_avg", init="zeros")
        self.exp_avg_sq = self.params.clone(prefix="exp_avg_sq", init="zeros")
        self.step_count = Parameter(Tensor(0, ms.int32), name="optimizer_step", requires_grad=False)
        self.beta1 = float(betas[0])
        self.beta2 = float(betas[1])
        self.eps = float(eps)
        n = len(self.params)
        if weight_decays is None:
            weight_decays = [float(weight_decay) if decays(p.name, p.shape) else 0.0 for p in self.params]
        self.lr_scales = tuple(float(s) for s in (lr_scales if lr_scales is not None else [1.0] * n))
        self.weight_decays = tuple(float(w) for w in weight_decays)
        if len(self.lr_scales) != n or len(self.weight_decays) != n:
            raise ValueError(f"AdamW: {n} parameters but {len(self.lr_scales)} lr scales and {len(self.weight_decays)} weight decays")
        self.adam = ops.AdamWeightDecay()
        self.fused = bool(fused) and all(p.dtype == ms.float32 for p in self.params)  # the kernel is fp32
        if self.fused:
            clip_adamw.fused_ops()  # MftError now (not at the first step) if the kernels cannot run
            self.settings = clip_adamw.settings_tensor(self.lr_scales, self.weight_decays)

    def fused_hyper(self, max_norm: float | None) -> Tensor:
        """The constant `hyper` input of `clip_update` for a clip threshold (None: no clipping)."""
        return clip_adamw.hyper_tensor(self.beta1, self.beta2, self.eps, max_norm)

    def clip_update(self, grads, lr, hyper):
        """Clip to the global norm and step every tensor in one kernel; returns the pre-clip norm.
        Nothing (not even the step counter) changes when the norm is not finite."""
        return clip_adamw.clip_adamw(lr, hyper, self.step_count, self.settings, self.params, self.exp_avg,
                                     self.exp_avg_sq, grads)

    def construct(self, grads, lr):
        step = self.step_count + 1
        ops.assign(self.step_count, step)
        lr_t, eps_t, c = adam_step_scalars(step, lr, self.beta1, self.beta2, self.eps)
        no_decay = ops.zeros((), ms.float32)
        for i in range(len(self.params)):
            lr_i = lr_t if self.lr_scales[i] == 1.0 else lr_t * self.lr_scales[i]
            decay = no_decay if self.weight_decays[i] == 0.0 else self.weight_decays[i] / c
            self.adam(self.params[i], self.exp_avg[i], self.exp_avg_sq[i], lr_i, self.beta1, self.beta2, eps_t, decay, grads[i])
        return step

    def state_tensors(self) -> dict[str, Parameter]:
        """Name -> Parameter for every piece of optimizer state (for checkpoints)."""
        state = {"optimizer_step": self.step_count}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            state[f"exp_avg.{p.name}"] = m
            state[f"exp_avg_sq.{p.name}"] = v
        return state
