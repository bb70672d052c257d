"""Sliding windows over one document, as Hugging Face's perplexity recipe cuts them.

Window k covers tokens [begin, end) with begin = k * stride and
end = min(begin + max_length, n); only the tokens after the previous
window's end are scored there (the stride's new tokens), and a token is
scored only when it has context inside its window, so a document's first
token is never scored. With stride < max_length every token 1..n-1 is
scored exactly once; with stride == max_length (disjoint windows) each
window's first token has no context and, as in the recipe, is not scored.
"""

from __future__ import annotations

from typing import NamedTuple

from mft.errors import MftError


class Window(NamedTuple):
    begin: int  # first input token (document index)
    end: int  # one past the last input token
    first_scored: int  # first document index scored in this window (> begin)


def check_window_args(max_length: int, stride: int, what: str = "") -> None:
    if max_length < 2:
        raise MftError(f"{what}--max-length={max_length} must be at least 2 (one context token and one scored token)")
    if stride < 1 or stride > max_length:
        raise MftError(f"{what}--stride={stride} must be in [1, --max-length={max_length}] (a larger stride would skip tokens)")


def sliding_windows(n: int, max_length: int, stride: int) -> list[Window]:
    """Windows of a document of n tokens; windows with nothing to score are dropped."""
    check_window_args(max_length, stride)
    out = []
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        first = max(prev_end, begin + 1)
        if first < end:
            out.append(Window(begin, end, first))
        prev_end = end
        if end == n:
            break
    return out
