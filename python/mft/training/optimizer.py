"""AdamW with decoupled weight decay, written as a Cell the jitted step calls.

Our own rather than `nn.AdamWeightDecay` so that the learning rate is a step
input (no recompiles), the state (m, v, step) has stable names for
checkpoints, and resume can restore it exactly.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops


def decays(param_name: str, shape: tuple) -> bool:
    """Weight decay applies to matrices only: not to norms, biases or scalars."""
    return len(shape) >= 2 and not param_name.endswith(".bias")


class AdamW(nn.Cell):
    def __init__(self, params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0):
        super().__init__()
        self.params = ParameterTuple(params)
        self.exp_avg = self.params.clone(prefix="exp_avg", init="zeros")
        self.exp_avg_sq = self.params.clone(prefix="exp_avg_sq", init="zeros")
        self.step_count = Parameter(Tensor(0, ms.int32), name="optimizer_step", requires_grad=False)
        self.beta1 = float(betas[0])
        self.beta2 = float(betas[1])
        self.eps = float(eps)
        self.decay_flags = tuple(decays(p.name, p.shape) for p in self.params)
        self.weight_decay = float(weight_decay)
        self.adam = ops.AdamWeightDecay()

    def construct(self, grads, lr):
        # MindSpore's fused AdamWeightDecay kernel has no bias correction; fold it
        # into its inputs: with c = sqrt(1 - b2^t) / (1 - b1^t),
        #   m_hat / (sqrt(v_hat) + eps) == c * m / (sqrt(v) + eps * sqrt(1 - b2^t)),
        # and the decay input is divided by c so lr * decay stays lr * weight_decay.
        step = self.step_count + 1
        ops.assign(self.step_count, step)
        stepf = step.astype(ms.float32)
        root2 = ops.sqrt(1.0 - ops.pow(self.beta2, stepf))
        c = root2 / (1.0 - ops.pow(self.beta1, stepf))
        lr_t = lr * c
        eps_t = self.eps * root2
        decay_t = self.weight_decay / c
        no_decay = ops.zeros((), ms.float32)
        for i in range(len(self.params)):
            decay = decay_t if self.decay_flags[i] else no_decay
            self.adam(self.params[i], self.exp_avg[i], self.exp_avg_sq[i], lr_t, self.beta1, self.beta2, eps_t, decay, grads[i])
        return step

    def state_tensors(self) -> dict[str, Parameter]:
        """Name -> Parameter for every piece of optimizer state (for checkpoints)."""
        state = {"optimizer_step": self.step_count}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            state[f"exp_avg.{p.name}"] = m
            state[f"exp_avg_sq.{p.name}"] = v
        return state
