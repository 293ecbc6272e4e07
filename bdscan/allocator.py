"""The allocator setting the CLI makes for its own process; torch-free, so `bdscan --version` and `--help` do not
wait for torch to import."""

from __future__ import annotations


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks up to 32 MiB in the heap instead of handing them back to the kernel. The
    trigger searches allocate and free the same activation buffers every step; by default each came back as
    fresh zeroed pages (kernel time of a small-CNN scan 9.6 s without this, 0.7 s with; benchmarks/inference_copy.py).
    Process-wide, so the CLI calls it, not the library; a no-op where the C library has no mallopt."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD: 32 MiB, the largest glibc accepts
    except (OSError, AttributeError, TypeError):
        pass
