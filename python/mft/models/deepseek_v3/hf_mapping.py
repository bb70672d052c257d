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


_MTP = re.compile(r"^mtp\.(\d+)\.(.*)$")
# MTP tensors of a checkpoint that are copies of the main model's (shared here).
_SHARED_IN_MTP = ("embed_tokens.weight", "shared_head.head.weight")


def param_to_hf_name(param_name: str, cfg=None) -> str:
    """mtp.<k>.{enorm,hnorm,eh_proj,head_norm,layer.*} -> model.layers.<L + k>.{..., shared_head.norm, *}."""
    m = _MTP.match(param_name)
    if not m:
        return param_name
    rest = m.group(2)
    if rest.startswith("layer."):
        rest = rest[len("layer."):]
    elif rest.startswith("head_norm."):
        rest = "shared_head.norm." + rest[len("head_norm."):]
    return f"model.layers.{cfg.num_hidden_layers + int(m.group(1))}.{rest}"


def skipped(name: str, cfg) -> bool:
    """MTP tensors of a checkpoint that this model does not build (or shares with the main model)."""
    m = _LAYER.match(name)
    if not m or int(m.group(1)) < cfg.num_hidden_layers:
        return False
    return int(m.group(1)) >= cfg.num_hidden_layers + cfg.mtp_layers or name.endswith(_SHARED_IN_MTP)


def absent_ok(tensors: dict, cfg) -> set:
    """A checkpoint without any MTP tensors (transformers never saves them) leaves the MTP
    modules at their initial values; one with some MTP tensors must have them all."""
    n = cfg.num_hidden_layers
    has_mtp = any((m := _LAYER.match(name)) and int(m.group(1)) >= n for name in tensors)
    return set() if has_mtp else _AllMtp(n)


class _AllMtp(set):
    """Membership test: any tensor of a layer index >= num_hidden_layers."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def __contains__(self, name) -> bool:
        m = _LAYER.match(name)
        return bool(m) and int(m.group(1)) >= self.n
