"""Which parameters get weight decay, which are Muon's, and per-name param groups.

Defaults: no weight decay for norms, biases, other vectors and token
embeddings; Muon takes the hidden matrices (and stacked expert matrices)
but not embeddings or the LM head. `train.optimizer.param_groups` then sets
an lr multiplier and/or weight decay per parameter name: the first group
whose regex `re.search`-es the name wins; a group's weight_decay replaces
the default rule for the parameters it matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mft.errors import ConfigError

_EMBEDDING = re.compile(r"(^|\.)embed_tokens\.")
_LM_HEAD = re.compile(r"(^|\.)lm_head\.")


def is_embedding(name: str) -> bool:
    return bool(_EMBEDDING.search(name))


def is_lm_head(name: str) -> bool:
    return bool(_LM_HEAD.search(name))


def decays(param_name: str, shape: tuple) -> bool:
    """Default weight-decay rule: matrices only, and not token embeddings or biases."""
    return len(shape) >= 2 and not param_name.endswith(".bias") and not is_embedding(param_name)


def uses_muon(param_name: str, shape: tuple) -> bool:
    """Muon's share: hidden matrices (last two axes; a leading axis stacks experts)."""
    return len(shape) >= 2 and not is_embedding(param_name) and not is_lm_head(param_name)


@dataclass(frozen=True)
class ParamSettings:
    lr_scale: float
    weight_decay: float


def param_settings(params, weight_decay: float, groups: list[dict]) -> list[ParamSettings]:
    """lr multiplier and weight decay per parameter (same order as `params`).

    A group whose pattern matches no parameter is a config error: it is
    almost always a typo, and silently training without it would be worse.
    """
    compiled = [re.compile(g["pattern"]) for g in groups]
    used = [False] * len(groups)
    out = []
    for p in params:
        settings = ParamSettings(1.0, weight_decay if decays(p.name, tuple(p.shape)) else 0.0)
        for i, (g, rx) in enumerate(zip(groups, compiled)):
            if rx.search(p.name):
                used[i] = True
                settings = ParamSettings(float(g.get("lr_scale", 1.0)), float(g.get("weight_decay", settings.weight_decay)))
                break
        out.append(settings)
    for i, g in enumerate(groups):
        if not used[i]:
            examples = ", ".join(p.name for p in list(params)[:3])
            raise ConfigError(
                f"key 'train.optimizer.param_groups[{i}].pattern' {g['pattern']!r} matches no trainable parameter "
                f"(or only ones an earlier group took); names look like {examples}"
            )
    return out
