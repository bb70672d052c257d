"""What `Tokenizer.encode`/`encode_batch` return beyond plain id lists:
pair rows (ids, offsets, type ids), overflowing windows, and the padded
rectangular batch (`PaddedBatch`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mft.errors import MftError

if TYPE_CHECKING:
    import numpy as np


class PaddedBatch(NamedTuple):
    """A rectangular batch: `input_ids` int32 [B, L], `attention_mask` int8
    [B, L] (1 = real token), `lengths` int64 [B] (tokens before padding)."""

    input_ids: "np.ndarray"
    attention_mask: "np.ndarray"
    lengths: "np.ndarray"


def pair_result(row, return_offsets: bool, return_type_ids: bool, as_numpy: bool):
    """(ids, type_ids, offsets) from the native pair encoder -> what `encode` returns."""
    ids, type_ids, offsets = row
    if as_numpy:
        import numpy

        ids = numpy.asarray(ids, dtype=numpy.uint32)
    out = (ids,)
    if return_offsets:
        out += (offsets,)
    if return_type_ids:
        out += (type_ids,)
    return out if len(out) > 1 else ids


def overflow_result(rows, return_offsets: bool, return_type_ids: bool, as_numpy: bool) -> list:
    """One text's main encoding and its overflowing windows, each as `encode` returns it."""
    return [pair_result(r, return_offsets, return_type_ids, as_numpy) for r in rows]


class OverflowingBatch(NamedTuple):
    """`encode_batch(..., return_overflowing=True, return_overflow_to_sample_mapping=True)`:
    `rows`, every text's encoding and then its overflowing windows, in
    order (each shaped as `encode` returns it), and
    `overflow_to_sample_mapping`, per row the index of its text."""

    rows: list
    overflow_to_sample_mapping: list


def flat_overflowing(per_text: list) -> OverflowingBatch:
    """Every text's encoding and overflowing windows (per_text: a list of row lists) flattened in order, with
    each row's text index (transformers' overflow_to_sample_mapping)."""
    rows, mapping = [], []
    for i, text_rows in enumerate(per_text):
        rows.extend(text_rows)
        mapping.extend([i] * len(text_rows))
    return OverflowingBatch(rows, mapping)


def padded_batch(native, source: str, texts, add_special_tokens, max_length, padding, pad_id, padding_side,
                 default_pad_id) -> PaddedBatch:
    """`encode_batch(..., max_length=, padding=)`: texts cut and padded into numpy arrays."""
    if native.file_limits:
        raise MftError(
            f"{source}: the tokenizer.json sets its own truncation/padding (applied to every encode); "
            "call encode_batch without max_length/padding, or set them to null in the file"
        )
    if padding not in (False, True, "longest", "max_length"):
        raise MftError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
    if padding_side not in ("right", "left"):
        raise MftError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise MftError(f"max_length must be a positive int, got {max_length!r}")
    if padding == "max_length" and max_length is None:
        raise MftError("padding='max_length' needs max_length")
    if pad_id is None:
        pad_id = default_pad_id
        if pad_id is None:
            if padding:
                raise MftError("this tokenizer names no pad (or eos) token; pass pad_id")
            pad_id = 0
    pad_to = max_length if padding == "max_length" else None
    try:
        ids, mask, lengths = native.encode_batch_padded(
            texts, add_special_tokens, max_length, pad_to, int(pad_id), padding_side == "left"
        )
    except ValueError as e:
        raise MftError(str(e)) from None
    return PaddedBatch(ids, mask, lengths)
