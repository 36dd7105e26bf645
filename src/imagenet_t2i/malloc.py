"""glibc malloc settings for the tensor-heavy processes (training, sampling, evaluation).

By default glibc serves large blocks with fresh ``mmap`` pages and gives freed heap memory back to the kernel, so
a sampling or training step that frees and reallocates its activations can touch new pages every time (a minor page
fault per 4 KiB page; `tests/test_malloc.py` counts them). glibc raises its thresholds after freeing a large mapped
block, so how much that costs depends on the allocation history (38-51 thousand faults per tiny sampling call here,
about 1,500 on another machine). Serving blocks up to 16 MiB from the heap and keeping up to 256 MiB of freed memory
from the start makes the next step reuse the same pages. Elsewhere (no glibc) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 16 << 20
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Apply the settings above to this process; True when glibc took them."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
