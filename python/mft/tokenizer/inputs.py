"""Checks and conversions of what callers pass to `Tokenizer`: texts, text
pairs, id sequences and training sources (bad input -> MftError)."""

from __future__ import annotations

import os

from mft.errors import MftError
from mft.tokenizer.corpus import iter_texts


def id_list(ids) -> list[int]:
    """A sequence of ids (list, numpy array, ...) as a list of ints in [0, 2^32)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise MftError("decode expects a sequence of integer ids") from None
    if ids and (min(ids) < 0 or max(ids) >= 2**32):
        raise MftError(f"decode: ids must be in [0, 2^32), got {min(ids)}..{max(ids)}")
    return ids


def batch_items(texts) -> list:
    """encode_batch's items: str, or a (str, str) pair as a tuple."""
    if isinstance(texts, str):
        raise MftError("encode_batch expects a list of str, got a single str")
    items = list(texts)
    for i, t in enumerate(items):
        if isinstance(t, str):
            continue
        if isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(x, str) for x in t):
            items[i] = (t[0], t[1])
            continue
        raise MftError(f"encode_batch: item {i} is {type(t).__name__}, expected str or a (str, str) pair")
    return items


def str_list(texts) -> list[str]:
    """A list of str (a single str is refused: it is almost always a mistake)."""
    if isinstance(texts, str):
        raise MftError("encode_batch expects a list of str, got a single str")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise MftError(f"encode_batch: item {i} is {type(t).__name__}, expected str")
    return texts


def texts_of(source, field: str):
    """Paths (a path, or a list whose items are paths) -> file texts; else the items are texts."""
    if isinstance(source, (str, os.PathLike)):
        return iter_texts([source], field)
    if isinstance(source, (list, tuple)) and source:
        is_file = [isinstance(s, os.PathLike) or (isinstance(s, str) and os.path.isfile(s)) for s in source]
        if all(is_file):
            return iter_texts(source, field)
        if any(is_file):
            missing = next(s for s, f in zip(source, is_file) if not f)
            raise MftError(f"{missing}: no such training file (the other items are files)")
    return iter(source)
