"""Python bytecodes the emulator executes per simulated second: a count of the
interpreter's work that, unlike a time, does not change with the machine's load.

The emulator's frame path, scheduler and nodes are Python; what they cost is mostly
bytecodes run. A tracer that sees every opcode (``sys.settrace`` with
``f_trace_opcodes``) counts them over a stretch of simulated time; numba kernels and
C functions count only as the bytecodes that call them. The same code on the same
seed gives the same count on any machine (used by ``make bench`` and by
``bench.compare``, which copies this file into its workers).
"""

from __future__ import annotations

import collections
import sys
from typing import Any


def bytecodes_per_s(emu: Any, seconds: float, top: Any = None) -> float:
    """Run ``emu`` on for ``seconds`` simulated seconds and return the bytecodes it ran
    per simulated second; ``top`` (a Counter) receives them per function."""
    count = [0]
    per = top if top is not None else collections.Counter()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            count[0] += 1
            if top is not None:
                per[frame.f_code.co_qualname] += 1
        return tracer

    end = emu.scheduler.now_s + seconds
    sys.settrace(tracer)
    try:
        emu.run(end)
    finally:
        sys.settrace(None)
    return count[0] / seconds
