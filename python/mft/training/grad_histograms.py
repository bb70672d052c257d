"""Gradient histograms for TensorBoard (`monitor.grad_histograms` with `monitor.histograms_every`).

The train step's compiled graph keeps gradients internal, so on a histogram step
`GradientProbe` runs one more forward/backward of that step's batch, before the
step updates the weights: the same gradients the step then averages, pre-clip,
unscaled. No collective: with data parallelism these are rank 0's share of the
batch (before the dp average), with tensor parallelism rank 0's pieces. MoE
expert-bias updates are not repeated (bias rate 0). Cost: one extra
forward/backward every `histograms_every` steps (plus, in graph mode, one
compilation of the gradient graph).
"""

from __future__ import annotations

import numpy as np


class GradientProbe:
    def __init__(self, model, params, jit: bool):
        from mindspore import ParameterTuple

        from mft.training.train_step import CausalLMLoss, _GradCell

        self.names = [p.name for p in params]
        self.jit = jit
        self.cell = _GradCell(CausalLMLoss(model), ParameterTuple(params), None, 0.0)
        self.cell.set_train()

    def gradients(self, input_ids, labels) -> dict[str, np.ndarray]:
        """input_ids/labels (accum, batch, seq): the mean gradient over the micro-batches, by parameter name."""
        from mindspore import Tensor

        from mft.training.train_step import graph_mode

        acc = None
        with graph_mode(self.jit):
            for i in range(len(input_ids)):
                _, grads = self.cell(Tensor(input_ids[i]), Tensor(labels[i]), Tensor(1.0))
                g = [x.asnumpy().astype(np.float32) for x in grads]
                acc = g if acc is None else [a + b for a, b in zip(acc, g)]
        return {f"gradients/{n}": a / len(input_ids) for n, a in zip(self.names, acc)}
