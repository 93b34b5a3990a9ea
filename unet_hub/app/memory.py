"""Giving freed memory back to the system (glibc only; elsewhere these do nothing).

Gradio runs handlers on a pool of threads, and glibc gives each thread its own malloc
arena that keeps the memory a run freed. With tens of threads and hundreds of MB per run
(a 4-megapixel image), the app's resident memory would grow with every new thread
though nothing is kept. So the server caps the arenas and trims after each run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: mallopt's parameter for the number of arenas (glibc's malloc.h).
M_ARENA_MAX = -8


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Let the threads created from now on share ``arenas`` malloc arenas."""
    if (libc := _libc()) is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def release_freed_memory() -> None:
    """Return the memory that malloc holds free to the system."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)
