"""Scheme names and the checked options of one `mft quantize` run.

Every check here runs before anything is read heavily or written, and each
error names the option (`--scheme`, `--group-size`, `--calib`, `--out`).
Schemes: w8a16, w4a16, w8a8 (weights), kv8 (an int8 KV cache), and
w8a16+kv8 / w8a8+kv8 (both, one compressed-tensors config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mft.errors import MftError

# scheme -> weight bits; activations stay float (the "a16" part: fp32 on CPU) except
# w8a8 (int8 per token at run time, SmoothQuant).
IMPLEMENTED_SCHEMES = {"w8a16": 8, "w4a16": 4, "w8a8": 8}
# kv8: an int8 KV cache with static per-(layer, kv head) scales from calibration (mft.quant.kv_calibration),
# alone or added to a weight scheme whose layout can carry it: WEIGHT+kv8.
KV_SCHEME = "kv8"
KV_COMBINABLE = ("w8a16", "w8a8")  # compressed-tensors has `kv_cache_scheme`; the GPTQ / AWQ configs do not
SCHEME_NAMES = (*IMPLEMENTED_SCHEMES, KV_SCHEME, *(f"{w}+{KV_SCHEME}" for w in KV_COMBINABLE))
METHODS = ("rtn", "gptq", "smoothquant", "awq")
CALIBRATED = ("gptq", "smoothquant", "awq")
DEFAULT_GROUP_SIZE = 128
DEFAULT_SMOOTH_ALPHA = 0.5


@dataclass(frozen=True)
class QuantOptions:
    scheme: str
    method: str = "rtn"
    group_size: int = DEFAULT_GROUP_SIZE  # w4a16 only; -1 = one group per row
    calib: str | None = None
    calib_tokens: int = 16384
    calib_seq_len: int = 256
    damp: float = 0.01
    smooth_alpha: float = DEFAULT_SMOOTH_ALPHA  # w8a8 smoothquant / gptq: migration strength

    @property
    def weight_scheme(self) -> str | None:
        """w8a16 / w4a16 / w8a8, or None for kv8 alone (weights stay float)."""
        parts = self.scheme.split("+")
        weights = [p for p in parts if p != KV_SCHEME]
        return weights[0] if weights else None

    @property
    def kv8(self) -> bool:
        return KV_SCHEME in self.scheme.split("+")

    @property
    def bits(self) -> int | None:
        return IMPLEMENTED_SCHEMES[self.weight_scheme] if self.weight_scheme else None

    @property
    def act_bits(self) -> int | None:
        return 8 if self.weight_scheme == "w8a8" else None

    @property
    def smooth(self) -> bool:
        """w8a8 with calibration smooths (SmoothQuant) before quantizing the weights."""
        return self.weight_scheme == "w8a8" and self.method in CALIBRATED


def check_options(opts: QuantOptions) -> QuantOptions:
    """Checks that do not need the model (sizes are checked by check_model)."""
    if opts.kv8 and opts.weight_scheme == "w4a16":
        raise MftError(f"--scheme {opts.scheme}: kv8 combines with {' / '.join(KV_COMBINABLE)} only: int4 weights are "
                       "written in the GPTQ / AWQ layout, whose quantization_config has no kv_cache_scheme "
                       "(write w4a16 and kv8 as two separate models, or use w8a16+kv8)")
    if opts.scheme not in SCHEME_NAMES:
        raise MftError(f"--scheme {opts.scheme!r} is unknown; implemented schemes: {', '.join(SCHEME_NAMES)}")
    if opts.method not in METHODS:
        raise MftError(f"--method {opts.method!r} is unknown; choose one of {', '.join(METHODS)}")
    if opts.weight_scheme is None and opts.method != "rtn":
        raise MftError(f"--method {opts.method}: --scheme kv8 alone quantizes no weights (its KV scales always come "
                       "from --calib); add a weight scheme, e.g. --scheme w8a16+kv8")
    if opts.weight_scheme == "w4a16" and not (opts.group_size == -1 or opts.group_size >= 16 and opts.group_size % 16 == 0):
        raise MftError(f"--group-size {opts.group_size}: must be a positive multiple of 16 (or -1 for one group per row)")
    if opts.method == "smoothquant" and opts.weight_scheme != "w8a8":
        raise MftError(f"--method smoothquant is for --scheme w8a8 (int8 activations), not {opts.scheme}")
    if opts.method == "awq" and opts.weight_scheme != "w4a16":
        raise MftError(f"--method awq is for --scheme w4a16 (int4 weights), not {opts.scheme}")
    if opts.method == "awq" and opts.group_size <= 0:
        raise MftError(f"--group-size {opts.group_size}: the AWQ layout needs a positive group size (multiple of 16)")
    if opts.smooth and not 0 < opts.smooth_alpha < 1:
        raise MftError(f"--smooth-alpha {opts.smooth_alpha}: must be in (0, 1)")
    if opts.method in CALIBRATED or opts.kv8:
        if opts.calib is None:
            why = f"--method {opts.method}" if opts.method in CALIBRATED else f"--scheme {opts.scheme} (static KV scales)"
            raise MftError(f"--calib FILE is required with {why} (text or JSONL calibration data)")
        if not os.path.isfile(opts.calib):
            raise MftError(f"--calib {opts.calib}: no such file")
        if opts.calib_tokens < 1 or opts.calib_seq_len < 2:
            raise MftError("--calib-tokens must be >= 1 and --calib-seq-len >= 2")
        if not 0 <= opts.damp < 1:
            raise MftError(f"--damp {opts.damp}: must be in [0, 1)")
    elif opts.calib is not None:
        raise MftError("--calib is only used by --method gptq / awq / smoothquant and by kv8 schemes (rtn needs no "
                       "calibration data)")
    return opts


def check_out_dir(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise MftError(f"--out {out}: exists and is not an empty directory (choose a new folder)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise MftError(f"--out {out}: parent directory {parent} does not exist")


def check_model(opts: QuantOptions, linears: dict[str, tuple[int, int]]) -> None:
    """linears: HF prefix -> (out_features, in_features) of every linear to quantize."""
    if opts.weight_scheme is None:
        return
    if not linears:
        raise MftError(f"--scheme {opts.scheme}: the model has no linear layers mft can quantize")
    if opts.weight_scheme == "w4a16":
        g = opts.group_size
        for name, (_, k) in linears.items():
            if g > 0 and k % g:
                raise MftError(f"--group-size {g} does not divide the in-features ({k}) of {name}; use a divisor of {k}")
            if g <= 0 and k % 16:
                raise MftError(f"--group-size -1: in-features {k} of {name} is not a multiple of 16 (int4 kernel packing)")
