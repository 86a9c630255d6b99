"""glibc malloc tuning against memory fragmentation under varying tensor sizes.

Batches of varying shape make torch allocate and free blocks of every size. glibc raises its
mmap threshold each time a large block is freed, so later large blocks come from the heap and
fragment it: RSS creeps up under sustained load (measured: +16% in a 60 s soak). Pinning the
threshold (which also turns off that dynamic adjustment) keeps large blocks in mmap, returned to
the OS when freed. Skipped when another allocator is preloaded (jemalloc, tcmalloc) or when
``BGE_PREDICTOR_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_glibc_malloc() -> bool:
    if os.environ.get("BGE_PREDICTOR_MALLOC_TUNING", "1").lower() in ("0", "false", "no"):
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if ok:
        logger.info("glibc malloc: mmap threshold pinned at %d bytes", MMAP_THRESHOLD_BYTES)
    return ok
