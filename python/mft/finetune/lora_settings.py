"""LoRA settings and PEFT's target-module rule (numpy-free of MindSpore: `mft plan` reads them too).

`LoraSettings(r, alpha, dropout, target_modules, use_rslora, modules_to_save)` checks its fields;
`matches(path, target_modules)` is PEFT's rule: a list of names, each matching a module path equal to
it or ending in `.<name>`; or one string, a regex that must match the whole path. The overview of
LoRA in mft is `mft.finetune.lora`'s docstring.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from mft.errors import MftError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA hyperparameters as PEFT's LoraConfig names them (r, lora_alpha, lora_dropout, target_modules,
    use_rslora, modules_to_save), checked on construction (MftError naming the field)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: list(DEFAULT_TARGETS))
    use_rslora: bool = False
    modules_to_save: list[str] | None = None

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise MftError(f"lora r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise MftError(f"lora alpha must be positive, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise MftError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as e:
                raise MftError(f"lora target_modules regex {self.target_modules!r} does not compile: {e}") from None
        elif not (isinstance(self.target_modules, (list, tuple)) and self.target_modules
                  and all(isinstance(t, str) and t for t in self.target_modules)):
            raise MftError(f"lora target_modules must be a non-empty list of names or one regex string, got {self.target_modules!r}")
        else:
            self.target_modules = list(self.target_modules)
        if self.modules_to_save is not None:
            if not (isinstance(self.modules_to_save, (list, tuple)) and all(isinstance(t, str) and t for t in self.modules_to_save)):
                raise MftError(f"lora modules_to_save must be a list of module names, got {self.modules_to_save!r}")
            self.modules_to_save = list(self.modules_to_save) or None

    @classmethod
    def from_config(cls, cfg) -> LoraSettings:
        """The settings of a recipe's finetune.lora section; MftError naming finetune.lora when invalid."""
        lc = cfg.finetune.lora
        try:
            return cls(r=lc.r, alpha=lc.alpha, dropout=lc.dropout, target_modules=lc.target_modules,
                       use_rslora=lc.use_rslora, modules_to_save=lc.modules_to_save)
        except MftError as e:
            raise MftError(f"finetune.lora: {e}") from None

    @property
    def scaling(self) -> float:
        """The factor of the low-rank update: alpha / r, or alpha / sqrt(r) with use_rslora."""
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


def matches(path: str, target_modules) -> bool:
    """PEFT's rule: a regex string must match the whole path; a list entry matches the path or its last parts."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, path) is not None
    return any(path == t or path.endswith("." + t) for t in target_modules)
