"""The process's memory allocator: jemalloc when the machine has it, else a pinned glibc malloc.

A serving process allocates and frees activation tensors of a different shape on every batch.
glibc malloc handles that badly either way (docs/benchmarks.md, "Memory allocator"): with its
default dynamic mmap threshold the heap fragments and RSS creeps up under sustained load; with
the threshold pinned low, every large activation is a fresh ``mmap``/``munmap`` pair, page-faulted
and zeroed again, which costs a third of the throughput on short texts. jemalloc reuses freed
memory by size class and returns it to the OS on a decay timer: the soak measured both the
higher throughput and flat RSS with it.

An allocator can only be chosen before the process starts, so ``use_jemalloc`` re-executes the
same command line (``os.execve``: same PID, same arguments) with jemalloc in ``LD_PRELOAD``.
``BGE_PREDICTOR_ALLOCATOR`` chooses: ``auto`` (default: jemalloc if ``libjemalloc.so.2`` is
installed, else glibc), ``jemalloc`` (fail if it cannot be preloaded), ``glibc``. An allocator
the operator preloaded, or glibc ``MALLOC_*_`` variables in the environment, are kept as they
are. On glibc, ``tune_glibc_malloc`` then pins the mmap threshold (128 KiB) unless
``BGE_PREDICTOR_MALLOC_TUNING=0`` or the operator set ``MALLOC_*_`` variables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

ALLOCATOR_ENV = "BGE_PREDICTOR_ALLOCATOR"
MODES = ("auto", "jemalloc", "glibc")
# Set on the re-executed process: a second attempt means the preload did not take.
_REEXECUTED_ENV = "BGE_PREDICTOR_ALLOCATOR_REEXECUTED"
_KNOWN_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

# Keep freed pages for reuse instead of purging them on jemalloc's 10 s decay curve: the purge
# runs continuously, so activations keep faulting pages back in (8 x 512-token forward: 560-570
# ms against 650-680 with the default decay, 590-640 on glibc). RSS then stays at its
# high-water mark, which a batch-size-bounded server reaches in its first minutes (like
# torch's CUDA caching allocator). An operator's MALLOC_CONF replaces this.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def allocator_mode(environ=os.environ) -> str:
    mode = environ.get(ALLOCATOR_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise SystemExit(f"error: {ALLOCATOR_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def loaded_allocator(maps_path: str = "/proc/self/maps") -> str:
    """The malloc replacement mapped into this process (jemalloc, tcmalloc, ...), or 'glibc'."""
    try:
        maps = Path(maps_path).read_text(errors="replace")
    except OSError:
        return "glibc"
    for name in _KNOWN_ALLOCATORS:
        if f"lib{name}" in maps:
            return name
    return "glibc"


def _operator_tuned_glibc(environ) -> bool:
    return any(name.startswith("MALLOC_") and name.endswith("_") for name in environ)


def find_jemalloc() -> str | None:
    """jemalloc's shared library as the dynamic linker finds it (``libjemalloc.so.2``)."""
    return ctypes.util.find_library("jemalloc")


def use_jemalloc(environ=os.environ, execve=os.execve) -> None:
    """Re-execute this command with jemalloc preloaded, when the mode and the machine allow.

    Returns when the process keeps its current allocator; otherwise does not return.
    Call it first thing, before torch allocates anything worth keeping.
    """
    mode = allocator_mode(environ)
    if mode == "glibc" or not sys.platform.startswith("linux"):
        return
    current = loaded_allocator()
    if current != "glibc":
        return  # preloaded already (by us or the operator)
    if mode == "auto" and _operator_tuned_glibc(environ):
        return
    if environ.get(_REEXECUTED_ENV):
        if mode == "jemalloc":
            raise SystemExit(f"error: {ALLOCATOR_ENV}=jemalloc but LD_PRELOAD did not load it")
        logger.warning("jemalloc was preloaded but is not mapped; staying on glibc malloc")
        return
    library = find_jemalloc()
    if library is None:
        if mode == "jemalloc":
            raise SystemExit(f"error: {ALLOCATOR_ENV}=jemalloc but libjemalloc is not installed "
                             "(Debian/Ubuntu: apt-get install libjemalloc2)")
        return
    preload = " ".join(filter(None, (library, environ.get("LD_PRELOAD", ""))))
    env = {"MALLOC_CONF": JEMALLOC_CONF, **environ, "LD_PRELOAD": preload, _REEXECUTED_ENV: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def tune_glibc_malloc(environ=os.environ) -> bool:
    """Pin glibc's mmap threshold (see the module docstring); False when it does not apply."""
    if environ.get("BGE_PREDICTOR_MALLOC_TUNING", "1").lower() in ("0", "false", "no"):
        return False
    if loaded_allocator() != "glibc" or _operator_tuned_glibc(environ):
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
