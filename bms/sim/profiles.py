"""Current profiles for the plant: built-in duty cycles and user CSV files.

Profiles are in amperes per step (+ = discharge). Built-in ones are written in
C-rate and scaled by the pack's capacity, so the same city-bus day fits the
bus pack and a storage container alike. Figures are representative of a 12 m
battery-electric city bus (about 1 kWh/km at 15-20 km/h average speed, peak
traction about 1C, regenerative braking about 0.5C), not one measured vehicle.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from bms.errors import InputError

__all__ = ["PROFILES", "city_bus_drive", "constant", "load_csv"]


def city_bus_drive(
    duration_s: float,
    dt_s: float,
    capacity_a: float,
    seed: int = 0,
    layover_every_s: float = 3600.0,
    layover_s: float = 600.0,
) -> np.ndarray:
    """Stop-and-go city driving with regenerative braking and layover rests.

    Each stop-to-stop cycle: acceleration (ramping down from about 1C),
    cruising, regenerative braking (charge), a stop with auxiliaries (HVAC,
    compressor) running; every ``layover_every_s`` a layover with auxiliaries only.
    ``capacity_a`` is the pack's 1C current (cell capacity x parallel cells).
    """
    _check_duration(duration_s, dt_s)
    n = round(duration_s / dt_s)
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    t = 0
    next_layover = layover_every_s
    aux = 0.02  # HVAC, air compressor, steering pump
    while t < n:
        now = t * dt_s
        if layover_every_s > 0 and now >= next_layover:
            seg: list[tuple[float, float, float | None]] = [(layover_s, aux, aux)]
            next_layover += layover_every_s
        else:
            seg = [
                (rng.uniform(8.0, 12.0), rng.uniform(0.6, 1.0), 0.3),  # accelerate, ramping down
                (rng.uniform(10.0, 30.0), rng.uniform(0.1, 0.2), None),  # cruise
                (rng.uniform(5.0, 8.0), -rng.uniform(0.25, 0.45), -0.05),  # regenerative brake
                (rng.uniform(15.0, 40.0), aux, aux),  # stop, doors open
            ]
        for length_s, start, end in seg:
            k = max(1, round(length_s / dt_s))
            stop = min(n, t + k)
            if end is None:
                out[t:stop] = start
            else:
                out[t:stop] = np.linspace(start, end, k)[: stop - t]
            t = stop
            if t >= n:
                break
    return out * capacity_a


def constant(duration_s: float, dt_s: float, current_a: float) -> np.ndarray:
    """A constant current (A, + = discharge)."""
    _check_duration(duration_s, dt_s)
    if not math.isfinite(current_a):
        raise InputError(f"current_a: must be a finite number, got {current_a}")
    return np.full(round(duration_s / dt_s), float(current_a))


def load_csv(path: str | Path, dt_s: float) -> np.ndarray:
    """A profile from a CSV file with columns ``time_s,current_a`` (header required).

    The current is held between samples (zero-order hold) and resampled to
    ``dt_s``. Every bad row is reported with its line number.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"profile file not found: {p}")
    times: list[float] = []
    currents: list[float] = []
    with p.open(newline="") as fh:
        reader = csv.reader(row for row in fh if not row.lstrip().startswith("#"))
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["time_s", "current_a"]:
            raise InputError(
                f"{p}: first line must be the header 'time_s,current_a', got {header!r}"
            )
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise InputError(f"{p}:{lineno}: needs two values (time_s,current_a), got {row!r}")
            try:
                t_s, i_a = float(row[0]), float(row[1])
            except ValueError:
                raise InputError(f"{p}:{lineno}: not a number in {row!r}") from None
            if not (math.isfinite(t_s) and math.isfinite(i_a)):
                raise InputError(f"{p}:{lineno}: values must be finite, got {row!r}")
            if times and t_s <= times[-1]:
                raise InputError(f"{p}:{lineno}: time_s must increase ({t_s} after {times[-1]})")
            times.append(t_s)
            currents.append(i_a)
    if len(times) < 2:
        raise InputError(f"{p}: needs at least two samples")
    t = np.asarray(times)
    grid = t[0] + dt_s * np.arange(int((t[-1] - t[0]) / dt_s))
    idx = np.searchsorted(t, grid, side="right") - 1
    return np.asarray(currents)[idx]


def _check_duration(duration_s: float, dt_s: float) -> None:
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise InputError(f"dt_s: must be a finite number > 0, got {dt_s}")
    if not (math.isfinite(duration_s) and duration_s >= dt_s):
        raise InputError(f"duration_s: must be at least one step ({dt_s} s), got {duration_s}")


PROFILES = ("city-bus-day", "constant")
