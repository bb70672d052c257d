"""Adafactor: a factored second moment, so optimizer memory grows with rows + cols.

For a weight with at least two axes (the last two factored; a leading axis
stacks experts), with t the step and beta2_t = min(beta2, 1 - t^-decay_rate):
    R <- beta2_t R + (1 - beta2_t) mean_cols(G^2 + eps^2)      # one value per row
    C <- beta2_t C + (1 - beta2_t) mean_rows(G^2 + eps^2)      # one value per column
    V = R C^T / mean(R)                                         # rank-1 estimate of E[G^2]
    U = G / sqrt(V);  U <- U / max(1, RMS(U) / clip_threshold)
    M <- beta1 M + (1 - beta1) U;  U = M                        # only when beta1 > 0
    W <- W - lr * (U + wd * W)
Vectors keep an unfactored V. The lr comes from the schedule (no relative
step size), as in Shazeer & Stern (2018) with external learning rates.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops


def _zeros_like_shape(shape, name: str) -> Parameter:
    return Parameter(Tensor(np.zeros(tuple(shape), np.float32)), name=name, requires_grad=False)


class Adafactor(nn.Cell):
    def __init__(self, params, lr_scales, weight_decays, beta1=0.9, beta2=0.999, decay_rate=0.8, eps=1e-8, clip_threshold=1.0):
        super().__init__(auto_prefix=False)
        params = list(params)
        self.params = ParameterTuple(params)
        self.factored = tuple(len(p.shape) >= 2 for p in params)
        rows, cols, full, index = [], [], [], []
        for p, f in zip(params, self.factored):
            shape = tuple(p.shape)
            if f:
                index.append(len(rows))
                rows.append(_zeros_like_shape(shape[:-1], f"exp_avg_sq_row.{p.name}"))
                cols.append(_zeros_like_shape(shape[:-2] + shape[-1:], f"exp_avg_sq_col.{p.name}"))
            else:
                index.append(len(full))
                full.append(_zeros_like_shape(shape, f"exp_avg_sq.{p.name}"))
        self.index = tuple(index)
        self.row = ParameterTuple(rows)
        self.col = ParameterTuple(cols)
        self.full = ParameterTuple(full)
        self.beta1 = float(beta1)
        self.use_momentum = self.beta1 > 0
        self.exp_avg = self.params.clone(prefix="exp_avg", init="zeros") if self.use_momentum else ParameterTuple([])
        self.beta2_cap = float(beta2)
        self.decay_rate = float(decay_rate)
        self.eps2 = float(eps) ** 2
        self.clip = float(clip_threshold)
        self.lr_scales = tuple(float(s) for s in lr_scales)
        self.weight_decays = tuple(float(w) for w in weight_decays)
        self.step_count = Parameter(Tensor(0, ms.int32), name="optimizer_step", requires_grad=False)

    def construct(self, grads, lr):
        step = self.step_count + 1
        ops.assign(self.step_count, step)
        t = step.astype(ms.float32)
        beta2 = ops.minimum(self.beta2_cap, 1.0 - ops.pow(t, -self.decay_rate))
        done = step
        for i in range(len(self.params)):
            p = self.params[i]
            g = grads[i]
            g2 = ops.square(g) + self.eps2
            j = self.index[i]
            if self.factored[i]:
                r = beta2 * self.row[j] + (1.0 - beta2) * ops.mean(g2, -1)
                c = beta2 * self.col[j] + (1.0 - beta2) * ops.mean(g2, -2)
                ops.assign(self.row[j], r)
                ops.assign(self.col[j], c)
                r_factor = ops.rsqrt(r / ops.mean(r, -1, keep_dims=True))
                u = g * ops.expand_dims(r_factor, -1) * ops.expand_dims(ops.rsqrt(c), -2)
            else:
                v = beta2 * self.full[j] + (1.0 - beta2) * g2
                ops.assign(self.full[j], v)
                u = g * ops.rsqrt(v)
            rms = ops.sqrt(ops.mean(ops.square(u)))
            u = u / ops.maximum(1.0, rms / self.clip)
            if self.use_momentum:
                m = self.beta1 * self.exp_avg[i] + (1.0 - self.beta1) * u
                ops.assign(self.exp_avg[i], m)
                u = m
            lr_i = lr * self.lr_scales[i]
            if self.weight_decays[i] != 0.0:
                u = u + self.weight_decays[i] * p
            done = ops.depend(done, ops.assign(p, p - lr_i * u))
        return done

    def state_tensors(self) -> dict[str, Parameter]:
        """Name -> Parameter: exp_avg_sq_row/_col.<param> (factored), exp_avg_sq.<param> (vectors), exp_avg.<param> if beta1 > 0."""
        state = {"optimizer_step": self.step_count}
        for i, (p, f, j) in enumerate(zip(self.params, self.factored, self.index)):
            if f:
                state[f"exp_avg_sq_row.{p.name}"] = self.row[j]
                state[f"exp_avg_sq_col.{p.name}"] = self.col[j]
            else:
                state[f"exp_avg_sq.{p.name}"] = self.full[j]
            if self.use_momentum:
                state[f"exp_avg.{p.name}"] = self.exp_avg[i]
        return state
