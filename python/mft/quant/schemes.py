"""Scheme names and the checked options of one `mft quantize` run.

Every check here runs before anything is read heavily or written, and each
error names the option (`--scheme`, `--group-size`, `--calib`, `--out`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mft.errors import MftError

# scheme -> weight bits; activations stay float (the "a16" part: fp32 on CPU) except
# w8a8 (int8 per token at run time, SmoothQuant).
IMPLEMENTED_SCHEMES = {"w8a16": 8, "w4a16": 4, "w8a8": 8}
NOT_YET = {
    "kv8": "an int8 KV cache is not implemented yet",
}
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
    def bits(self) -> int:
        return IMPLEMENTED_SCHEMES[self.scheme]

    @property
    def act_bits(self) -> int | None:
        return 8 if self.scheme == "w8a8" else None

    @property
    def smooth(self) -> bool:
        """w8a8 with calibration smooths (SmoothQuant) before quantizing the weights."""
        return self.scheme == "w8a8" and self.method in CALIBRATED


def check_options(opts: QuantOptions) -> QuantOptions:
    """Checks that do not need the model (sizes are checked by check_model)."""
    if opts.scheme in NOT_YET:
        raise MftError(f"--scheme {opts.scheme}: {NOT_YET[opts.scheme]}; implemented schemes: {', '.join(IMPLEMENTED_SCHEMES)}")
    if opts.scheme not in IMPLEMENTED_SCHEMES:
        raise MftError(f"--scheme {opts.scheme!r} is unknown; implemented schemes: {', '.join(IMPLEMENTED_SCHEMES)}")
    if opts.method not in METHODS:
        raise MftError(f"--method {opts.method!r} is unknown; choose one of {', '.join(METHODS)}")
    if opts.scheme == "w4a16" and not (opts.group_size == -1 or opts.group_size >= 16 and opts.group_size % 16 == 0):
        raise MftError(f"--group-size {opts.group_size}: must be a positive multiple of 16 (or -1 for one group per row)")
    if opts.method == "smoothquant" and opts.scheme != "w8a8":
        raise MftError(f"--method smoothquant is for --scheme w8a8 (int8 activations), not {opts.scheme}")
    if opts.method == "awq" and opts.scheme != "w4a16":
        raise MftError(f"--method awq is for --scheme w4a16 (int4 weights), not {opts.scheme}")
    if opts.method == "awq" and opts.group_size <= 0:
        raise MftError(f"--group-size {opts.group_size}: the AWQ layout needs a positive group size (multiple of 16)")
    if opts.smooth and not 0 < opts.smooth_alpha < 1:
        raise MftError(f"--smooth-alpha {opts.smooth_alpha}: must be in (0, 1)")
    if opts.method in CALIBRATED:
        if opts.calib is None:
            raise MftError(f"--calib FILE is required with --method {opts.method} (text or JSONL calibration data)")
        if not os.path.isfile(opts.calib):
            raise MftError(f"--calib {opts.calib}: no such file")
        if opts.calib_tokens < 1 or opts.calib_seq_len < 2:
            raise MftError("--calib-tokens must be >= 1 and --calib-seq-len >= 2")
        if not 0 <= opts.damp < 1:
            raise MftError(f"--damp {opts.damp}: must be in [0, 1)")
    elif opts.calib is not None:
        raise MftError("--calib is only used by --method gptq / smoothquant (rtn needs no calibration data)")
    return opts


def check_out_dir(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise MftError(f"--out {out}: exists and is not an empty directory (choose a new folder)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise MftError(f"--out {out}: parent directory {parent} does not exist")


def check_model(opts: QuantOptions, linears: dict[str, tuple[int, int]]) -> None:
    """linears: HF prefix -> (out_features, in_features) of every linear to quantize."""
    if not linears:
        raise MftError(f"--scheme {opts.scheme}: the model has no linear layers mft can quantize")
    if opts.scheme == "w4a16":
        g = opts.group_size
        for name, (_, k) in linears.items():
            if g > 0 and k % g:
                raise MftError(f"--group-size {g} does not divide the in-features ({k}) of {name}; use a divisor of {k}")
            if g <= 0 and k % 16:
                raise MftError(f"--group-size -1: in-features {k} of {name} is not a multiple of 16 (int4 kernel packing)")
