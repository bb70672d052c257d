"""Calibration data and per-linear Hessians for GPTQ.

`load_calib_tokens` reads a text file (one document) or JSONL (.jsonl/.json,
{"text": ...} per line, one document each), encodes it with
the model folder's tokenizer and cuts it into sequences. `collect_hessians`
runs the float model over them and accumulates H = sum x x^T of every input
row x that reaches each target linear (in float64), through forward pre-hooks.
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


def collect_hessians(model, linears: dict, sequences: list[list[int]]) -> dict:
    """HF prefix -> (H float64 (K, K), rows seen), from the float model's forward."""
    import mindspore as ms

    acc = {name: [np.zeros((cell.in_features, cell.in_features)), 0] for name, (_, cell) in linears.items()}
    handles = []

    def make_hook(name):
        def hook(cell, inputs):
            x = inputs[0].asnumpy().reshape(-1, cell.in_features).astype(np.float64)
            acc[name][0] += x.T @ x
            acc[name][1] += x.shape[0]

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
    return {name: (h / max(n, 1), n) for name, (h, n) in acc.items()}
