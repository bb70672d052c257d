"""AdamW's old home: kept so `from mft.training.optimizer import AdamW` still works.

The optimizers live in `mft.training.optim` (one module each, `build_optimizer`).
"""

from mft.training.optim.adamw import AdamW
from mft.training.optim.rules import decays

__all__ = ["AdamW", "decays"]
