"""Optimizers as Cells: AdamW, Muon (+ AdamW), Adafactor; `build_optimizer` picks one.

Each is an `nn.Cell` built from the trainable Parameters whose
`construct(grads, lr)` updates them in place inside the compiled step (lr is
a float32 scalar tensor input, so schedules never recompile) and whose
`state_tensors()` names every piece of state for checkpoints. Importing this
package does not import MindSpore; the modules do.
"""

from mft.training.optim.factory import build_optimizer

__all__ = ["build_optimizer"]
