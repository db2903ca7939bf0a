"""What a HIL test uses: the device as its frames show it, the clock, the trace, checks.

- :class:`Device` (fixture ``dut``): the device's reported values by vocabulary
  name, its message records, and the bench procedures (power up, close, open,
  fault reset).
- :class:`Clock` (fixture ``clock``): ``advance`` and ``wait_for``, virtual or
  real time through one interface.
- :func:`expect_period`, :func:`expect_counters_and_crc`, :func:`within`:
  the checks, each failing with a message that says what was seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hil.bench import Bench, DeviceError, MessageRecord

__all__ = [
    "Clock",
    "Device",
    "Trace",
    "expect_counters_and_crc",
    "expect_period",
    "within",
]


class Device:
    """The device under test, through its CAN frames only."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.monitor = bench.monitor

    @property
    def emulated(self) -> bool:
        return self.bench.emulated

    def value(self, name: str, default: Any = None) -> Any:
        """The device's latest report of ``name`` (vocabulary name, e.g. ``bms_state``)."""
        return self.monitor.value(name, default)

    def array(self, name: str) -> np.ndarray:
        return self.monitor.array(name)

    def record(self, message: str) -> MessageRecord:
        return self.monitor.record(message)

    def message_of(self, value: str) -> str:
        """The name of the device's message that carries ``value``."""
        return self.monitor.message_of(value)

    @property
    def messages(self) -> list[str]:
        """The messages the device sends (by the binding), cyclic ones first."""
        recs = sorted(self.monitor.records.values(), key=lambda r: r.bm.period_s or math.inf)
        return [r.bm.name for r in recs]

    def power_up(self, timeout_s: float = 5.0) -> float:
        return self.bench.power_up(timeout_s)

    def close(self, mode: str = "Drive", timeout_s: float = 5.0) -> float:
        return self.bench.close(mode, timeout_s)

    def open(self, timeout_s: float = 3.0) -> float:
        return self.bench.open(timeout_s)

    def fault_reset(self) -> None:
        self.bench.fault_reset()


class Clock:
    """Time on the bench: simulated for the emulated device, the wall's for hardware."""

    def __init__(self, bench: Bench):
        self.bench = bench

    @property
    def now_s(self) -> float:
        return self.bench.now_s

    @property
    def virtual(self) -> bool:
        return self.bench.virtual

    def advance(self, seconds: float) -> None:
        self.bench.advance(seconds)

    def wait_for(
        self,
        condition: Callable[[], bool],
        timeout_s: float,
        what: str = "",
        show: tuple[str, ...] = (),
    ) -> float:
        """Advance until ``condition()`` holds; its time, or the test fails after
        ``timeout_s`` with ``what`` and the device's ``show`` values."""
        return self.bench.wait_for(condition, timeout_s, what, show=show)

    def hold(
        self, condition: Callable[[], bool], duration_s: float, what: str, step_s: float = 0.1
    ) -> None:
        """``condition()`` must hold for all of ``duration_s`` (checked every ``step_s``)."""
        end = self.now_s + duration_s
        while self.now_s < end - 1e-9:
            self.bench.advance(min(step_s, end - self.now_s))
            if not condition():
                raise AssertionError(
                    f"{what}: stopped holding after {duration_s - (end - self.now_s):.2f} s"
                )


class Trace:
    """The test's CAN log (every frame the bench sent and received)."""

    def __init__(self, bench: Bench):
        self.bench = bench

    @property
    def path(self) -> Path | None:
        return self.bench.trace_path

    @property
    def frames(self) -> int:
        s = self.bench.emu.link.stats
        return s.frames_tx + s.frames_rx


def expect_period(
    dut: Device,
    message: str,
    tolerance: float = 0.1,
    since_s: float = -math.inf,
    every_interval: bool | None = None,
) -> tuple[float, float, float]:
    """The period of ``message`` (per page for a paged one) within ``tolerance``
    (relative) of the DBC's cycle time; returns mean, lowest and highest interval.

    ``every_interval`` (the default in virtual time, where frames carry exact times):
    every single interval is judged. In real time the frames carry the times the host
    received them, which for an adapter without hardware timestamps (slcan) move by
    the host's own latency; there the mean and the median interval are judged, so a
    late or missing period still fails, and the extremes are returned for the report."""
    rec = dut.record(message)
    cycle_ms = rec.bm.codec.message.cycle_time
    if not cycle_ms:
        raise AssertionError(f"{message} has no GenMsgCycleTime in its DBC")
    period = cycle_ms / 1000.0
    mean, lo, hi, n = rec.period_stats(since_s)
    if n == 0:
        raise DeviceError(
            f"{message}: {rec.frames} frames seen, too few to measure its period ({period:g} s)"
        )
    last = rec.times[-1]
    late = 2.0 * period + (0.0 if dut.bench.virtual else 0.1)
    if dut.bench.now_s - last > late + 1e-9:
        raise AssertionError(
            f"{message}: no frame for {dut.bench.now_s - last:.2f} s (its last at "
            f"t={last:.2f} s), DBC period {cycle_ms:g} ms"
        )
    each = dut.bench.virtual if every_interval is None else every_interval
    tol = tolerance * period
    if each:
        ok = abs(lo - period) <= tol and abs(hi - period) <= tol
    else:
        ok = abs(mean - period) <= tol and abs(rec.median_interval(since_s) - period) <= tol
    if not ok:
        judged = "every interval" if each else "mean and median interval"
        raise AssertionError(
            f"{message}: intervals {lo * 1000:.1f}..{hi * 1000:.1f} ms (mean "
            f"{mean * 1000:.1f} ms, {n} intervals), DBC period {cycle_ms:g} ms "
            f"+/- {tolerance:.0%} ({judged})"
        )
    return mean, lo, hi


def expect_counters_and_crc(dut: Device, message: str) -> int:
    """Every frame of ``message`` with a valid CRC, length and alive counter sequence;
    returns the number of frames checked."""
    rec = dut.record(message)
    bm = rec.bm
    if rec.frames == 0:
        raise DeviceError(f"{message}: no frame seen")
    problems = []
    if rec.bad_dlc:
        problems.append(f"{rec.bad_dlc} frames of the wrong length")
    if rec.decode_errors:
        problems.append(f"{rec.decode_errors} frames that did not decode")
    if bm.crc is not None and rec.bad_crc:
        problems.append(f"{rec.bad_crc} bad CRCs")
    if bm.counter is not None and rec.counter_errors:
        problems.append(f"{rec.counter_errors} alive counter errors")
    if problems:
        raise AssertionError(f"{message}: {', '.join(problems)} in {rec.frames} frames")
    return rec.frames


def within(measured: float, expected: float, tol: float, what: str, unit: str = "") -> None:
    """``|measured - expected| <= tol``, or a message with both values."""
    if not (isinstance(measured, (int, float)) and math.isfinite(measured)):
        raise AssertionError(f"{what}: the device reported {measured!r}, expected {expected:g}")
    if abs(measured - expected) > tol:
        raise AssertionError(
            f"{what}: {measured:.4g} {unit}, expected {expected:.4g} {unit} +/- {tol:g} {unit}"
        )
