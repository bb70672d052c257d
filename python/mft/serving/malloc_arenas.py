"""One malloc arena for `mft serve` (glibc): the engine thread's frees come back to the shared heap.

glibc gives a thread that allocates while others do its own arena (up to 8 per core). The engine
steps on its own thread (server.py), and its arena held on to freed memory: with the llama fixture,
16 requests at a time after warm-up, in process, RSS grew ~3 MB more per 200 requests with the
engine on a thread than on the main thread, and malloc_trim() did not give it back; with one arena
(MALLOC_ARENA_MAX=1) the thread grew as the main thread does. `limit_arenas` sets the same limit with
mallopt(M_ARENA_MAX) before MindSpore starts its threads. A MALLOC_ARENA_MAX in the environment wins;
elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc malloc.h


def limit_arenas(count: int = 1) -> bool:
    """mallopt(M_ARENA_MAX, count) unless MALLOC_ARENA_MAX is set; True when glibc accepted it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))
