"""DeepSeek-V3 checkpoints use transformers' names, which our cells share.

Published checkpoints also carry the MTP modules as layers after the last
decoder layer (model.layers.<num_hidden_layers + k>.*); transformers does not
use them, and neither does our inference: they load into `mtp.<k>` when the
model was built with MTP layers, and are skipped otherwise.
"""

from __future__ import annotations

import re

from mft.models.common.hf_names import IGNORED_SUFFIXES, optional_tensors  # noqa: F401

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def param_to_hf_name(param_name: str) -> str:
    return param_name


def skipped(name: str, cfg) -> bool:
    """MTP tensors of a checkpoint that this model does not build."""
    m = _LAYER.match(name)
    return bool(m) and int(m.group(1)) >= cfg.num_hidden_layers + cfg.mtp_layers
