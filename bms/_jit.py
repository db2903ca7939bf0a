"""The one place that calls numba.

Every kernel of the package is compiled with the same flags: cached on disk
(a warm start loads machine code instead of compiling), GIL released (a CAN
thread keeps running while a kernel works), fastmath off (bit-reproducible
traces), no bounds checks.

Helpers called per cell inside a kernel's loop use :func:`inline`: numba then
merges them into the caller, where passing an array costs no reference counting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

JIT_FLAGS: dict[str, Any] = {
    "cache": True,
    "nogil": True,
    "fastmath": False,
    "error_model": "numpy",
}


def kernel(fn: F) -> F:
    """Compile ``fn`` as a numba kernel with the project's fixed flags."""
    return numba.njit(**JIT_FLAGS)(fn)


def inline(fn: F) -> F:
    """A per-cell helper, inlined into every kernel that calls it."""
    return numba.njit(inline="always", **JIT_FLAGS)(fn)


def shared(fn: F) -> F:
    """A helper that kernels and Python both call: plain Python from Python, compiled into
    the kernel that calls it (a layout written once for both sides)."""
    return numba.extending.register_jitable(fn)
