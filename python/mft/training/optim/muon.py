"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for hidden matrices.

For each hidden weight W (rows x cols; a leading axis stacks experts):
    B <- mu * B + G
    U = G + mu * B  (Nesterov) or B
    O = NS(U)                     # ~ U V^T of U's SVD: every singular value near 1
    W <- W * (1 - lr * wd) - lr * update_rms * sqrt(max(rows, cols)) * O
NS normalises X = U / ||U||_F (transposed so rows <= cols) and repeats
X <- a X + (b A + c A A) X with A = X X^T, (a, b, c) = (3.4445, -4.7750, 2.0315),
the quintic of Keller Jordan's Muon. The sqrt(max(rows, cols)) factor gives
the update an RMS of about `update_rms` whatever the shape (Moonlight's rule),
so one lr and weight decay suit both halves. Everything else (embeddings,
LM head, norms, biases) goes to an inner AdamW with its own state.
"""

from __future__ import annotations

import math

from mindspore import Parameter, ParameterTuple, nn, ops

from mft.training.optim.adamw import AdamW

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def _mT(x):
    return ops.swapaxes(x, -1, -2)


def newton_schulz(u, steps: int, transpose: bool):
    """Approximately orthogonalises the last two axes of `u` (static `transpose`: rows > cols)."""
    a, b, c = NS_COEFFS
    x = _mT(u) if transpose else u
    norm = ops.sqrt(ops.reduce_sum(ops.square(x), (-2, -1)))
    x = x / (ops.expand_dims(ops.expand_dims(norm, -1), -1) + 1e-7)
    for _ in range(steps):
        gram = ops.matmul(x, _mT(x))
        poly = b * gram + c * ops.matmul(gram, gram)
        x = a * x + ops.matmul(poly, x)
    return _mT(x) if transpose else x


class Muon(nn.Cell):
    """`construct(grads, lr)`: Muon for the parameters flagged in `muon_flags`, AdamW for the rest."""

    def __init__(self, params, muon_flags, lr_scales, weight_decays, momentum=0.95, nesterov=True, ns_steps=5,
                 update_rms=0.2, betas=(0.9, 0.95), eps=1e-8):
        super().__init__(auto_prefix=False)
        params = list(params)
        self.params = ParameterTuple(params)
        flags = [bool(f) for f in muon_flags]
        self.muon_idx = tuple(i for i, f in enumerate(flags) if f)
        self.adam_idx = tuple(i for i, f in enumerate(flags) if not f)
        muon_params = [params[i] for i in self.muon_idx]
        self.momentum_buf = ParameterTuple(muon_params).clone(prefix="momentum", init="zeros")
        self.muon_params = ParameterTuple(muon_params)
        self.mu = float(momentum)
        self.nesterov = bool(nesterov)
        self.ns_steps = int(ns_steps)
        self.transpose = tuple(p.shape[-2] > p.shape[-1] for p in muon_params)
        self.update_scale = tuple(float(update_rms) * math.sqrt(max(p.shape[-2], p.shape[-1])) for p in muon_params)
        self.muon_lr_scales = tuple(float(lr_scales[i]) for i in self.muon_idx)
        self.muon_decays = tuple(float(weight_decays[i]) for i in self.muon_idx)
        self.has_adam = len(self.adam_idx) > 0
        self.adamw = AdamW(
            [params[i] for i in self.adam_idx], betas=betas, eps=eps,
            lr_scales=[lr_scales[i] for i in self.adam_idx], weight_decays=[weight_decays[i] for i in self.adam_idx],
        )

    def construct(self, grads, lr):
        done = lr
        if self.has_adam:
            adam_grads = ()
            for i in self.adam_idx:
                adam_grads = adam_grads + (grads[i],)
            done = self.adamw(adam_grads, lr)
        for k in range(len(self.muon_idx)):
            g = grads[self.muon_idx[k]]
            p = self.muon_params[k]
            buf = self.mu * self.momentum_buf[k] + g
            ops.assign(self.momentum_buf[k], buf)
            u = g + self.mu * buf if self.nesterov else buf
            ortho = newton_schulz(u, self.ns_steps, self.transpose[k])
            lr_k = lr * self.muon_lr_scales[k]
            new = p * (1.0 - lr_k * self.muon_decays[k]) - (lr_k * self.update_scale[k]) * ortho
            done = ops.depend(done, ops.assign(p, new))
        return done

    def state_tensors(self) -> dict[str, Parameter]:
        """Name -> Parameter: `momentum.<param>` for Muon's share, the inner AdamW's state for the rest."""
        state = dict(self.adamw.state_tensors())
        for p, b in zip(self.muon_params, self.momentum_buf):
            state[f"momentum.{p.name}"] = b
        return state
