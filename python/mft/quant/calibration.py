"""Calibration data, per-linear Hessians for GPTQ and activation maxima for SmoothQuant.

`load_calib_tokens` reads a text file (one document) or JSONL (.jsonl/.json,
{"text": ...} per line, one document each), encodes it with
the model folder's tokenizer and cuts it into sequences. `collect_stats`
runs the float model over them once and accumulates, through forward
pre-hooks, H = sum x x^T of every input row x that reaches each target linear
(float64) and/or the per-input-channel max |x| (SmoothQuant).
"""

from __future__ import annotations

import json
import os

import numpy as np

from mft.errors import MftError

MIN_CALIB_TOKENS = 128


def _documents(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise MftError(f"--calib {path}: cannot read as UTF-8 text: {e}") from None
    if path.endswith((".jsonl", ".json")):
        docs = []
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise MftError(f"--calib {path}:{i}: invalid JSON: {e}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise MftError(f"--calib {path}:{i}: expected an object with a string \"text\" field")
            docs.append(obj["text"])
        return docs
    return [raw]


def load_calib_tokens(path: str, tokenizer_path: str, max_tokens: int, seq_len: int) -> list[list[int]]:
    """Sequences of seq_len tokens (the last may be shorter), at most max_tokens in all."""
    if not os.path.isfile(tokenizer_path):
        raise MftError(f"--calib: the model folder has no tokenizer.json ({tokenizer_path}) to encode calibration text")
    from mft.tokenizer import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    ids: list[int] = []
    for doc in _documents(path):
        if len(ids) >= max_tokens:
            break
        ids.extend(tok.encode(doc))
    ids = ids[:max_tokens]
    if len(ids) < MIN_CALIB_TOKENS:
        raise MftError(f"--calib {path}: only {len(ids)} tokens of calibration text; need at least {MIN_CALIB_TOKENS}")
    return [ids[i:i + seq_len] for i in range(0, len(ids), seq_len) if len(ids[i:i + seq_len]) >= 2]


def collect_stats(model, linears: dict, sequences: list[list[int]], hessians: bool = True, absmax: bool = False,
                  absmean: bool = False) -> dict:
    """HF prefix -> {"h": H float64 (K, K) / rows, "rows": n, "absmax": float32 (K,) max |x| per
    input channel, "absmean": float64 (K,) mean |x| per input channel (AWQ)}, from one pass of the
    float model (only the statistics asked for)."""
    import mindspore as ms

    acc = {name: {"rows": 0} for name in linears}
    for name, (_, cell) in linears.items():
        if hessians:
            acc[name]["h"] = np.zeros((cell.in_features, cell.in_features))
        if absmax:
            acc[name]["absmax"] = np.zeros(cell.in_features, np.float32)
        if absmean:
            acc[name]["absmean"] = np.zeros(cell.in_features)
    handles = []

    def make_hook(name):
        def hook(cell, inputs):
            x = inputs[0].asnumpy().reshape(-1, cell.in_features)
            a = acc[name]
            if hessians:
                x64 = x.astype(np.float64)
                a["h"] += x64.T @ x64
            if absmax:
                np.maximum(a["absmax"], np.abs(x).max(axis=0).astype(np.float32), out=a["absmax"])
            if absmean:
                a["absmean"] += np.abs(x).astype(np.float64).sum(axis=0)
            a["rows"] += x.shape[0]

        return hook

    for name, (_, cell) in linears.items():
        handles.append(cell.register_forward_pre_hook(make_hook(name)))
    try:
        model.set_train(False)
        for seq in sequences:
            model(ms.Tensor(np.asarray([seq], dtype=np.int32)))
    finally:
        for h in handles:
            h.remove()
    for a in acc.values():
        if hessians:
            a["h"] /= max(a["rows"], 1)
        if absmean:
            a["absmean"] /= max(a["rows"], 1)
    return acc


def collect_hessians(model, linears: dict, sequences: list[list[int]]) -> dict:
    """HF prefix -> (H float64 (K, K), rows seen), from the float model's forward."""
    return {name: (a["h"], a["rows"]) for name, a in collect_stats(model, linears, sequences).items()}
