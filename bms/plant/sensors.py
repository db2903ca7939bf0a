"""Sensors: what a BMS measures, kept apart from the truth.

Each channel has fixed errors drawn once from the sensor seed (offset, gain)
and white noise drawn per sample, then the ADC step and range. Faults act on
the measurement only: an open sense wire, a stuck/open/shorted temperature
sensor, an extra current-sensor offset. The firmware reads a
:class:`Measurement`; it never reads the plant's state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bms._jit import kernel
from bms.config import Config, VoltageSensorConfig
from bms.errors import InputError
from bms.plant import layout as L

if TYPE_CHECKING:
    from bms.plant.pack import Pack

__all__ = ["TEMP_SENSOR_MODES", "Measurement", "Sensors", "sense_cell_voltages"]

TEMP_SENSOR_MODES = {"ok": 0, "stuck": 1, "open": 2, "short": 3}


@kernel
def sense_cell_voltages(v_group, gain, offset, noise, noise_v, lsb_v, full_scale_v, wire_open, out):
    """Cell-voltage ADC readings of each series group.

    ``wire_open`` (n_series + 1) marks open sense wires; wire k sits at the node
    below group k. An open wire's node floats to the node below it (wire 0 to
    the node above), so one neighbour reads about 0 V and the other the sum of
    both: the signature a BMS's open-wire check looks for.
    """
    n = v_group.shape[0]
    node = 0.0  # true potential of the node below group s
    sensed_lo = 0.0
    for s in range(n + 1):
        if s < n:
            node_hi = node + v_group[s]
        else:
            node_hi = node
        if wire_open[s]:
            if s == 0:
                sensed = node_hi if n > 0 else 0.0
            else:
                sensed = sensed_lo
        else:
            sensed = node
        if s > 0:
            v = (sensed - sensed_lo) * (1.0 + gain[s - 1]) + offset[s - 1] + noise[s - 1] * noise_v
            if lsb_v > 0.0:
                v = math.floor(v / lsb_v + 0.5) * lsb_v
            if v < 0.0:
                v = 0.0
            elif v > full_scale_v:
                v = full_scale_v
            out[s - 1] = v
        sensed_lo = sensed
        node = node_hi


@kernel
def sense_temperatures(
    cell_temp_c, cells, offset, noise, noise_c, lsb_c, mode, last, open_c, short_c, out
):
    """Temperature sensor readings: sensor k sits on cell ``cells[k]``.

    ``mode`` per sensor: 0 ok, 1 stuck (repeats ``last``, its previous reading),
    2 open, 3 shorted (the fixed readings a real NTC input gives). ``last`` is
    updated with the new readings.
    """
    for k in range(cells.shape[0]):
        md = mode[k]
        if md == 1 and last[k] == last[k]:  # stuck, once it has a reading (not NaN)
            t = last[k]
        elif md == 2:
            t = open_c
        elif md == 3:
            t = short_c
        else:
            t = cell_temp_c[cells[k]] + offset[k] + noise[k] * noise_c
            if lsb_c > 0.0:
                t = math.floor(t / lsb_c + 0.5) * lsb_c
        out[k] = t
        last[k] = t


def _quantise(value: float, lsb: float, lo: float, hi: float) -> float:
    if lsb > 0.0:
        value = math.floor(value / lsb + 0.5) * lsb
    return min(max(value, lo), hi)


@dataclass
class Measurement:
    """One sample of every sensor, in physical units (what the BMS sees)."""

    time_s: float
    cell_voltage_v: np.ndarray  # one per series group
    temp_c: np.ndarray  # one per temperature sensor
    current_a: float  # + = discharge
    pack_voltage_v: float
    bus_voltage_v: float  # link side of the contactors
    contactor_feedback: dict[str, bool]


class _NormalStream:
    """Standard normal draws of one generator, handed out in order.

    Drawn in blocks (a block costs about what twenty single draws do, and a reading
    takes one to a few hundred values); an array draw of numpy's ``Generator`` is the
    same sequence as single draws, so the readings of a seed do not depend on how the
    stream is cut.
    """

    BLOCK = 1024

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._block = np.empty(0)
        self._pos = self.BLOCK  # drawn on first use

    def _refill(self) -> None:
        self._block = self._rng.standard_normal(self.BLOCK)
        self._pos = 0

    def scalar(self) -> float:
        """The next value."""
        pos = self._pos
        if pos >= self.BLOCK:
            self._refill()
            pos = 0
        self._pos = pos + 1
        v: float = self._block.item(pos)
        return v

    def fill(self, out: np.ndarray) -> np.ndarray:
        """``out`` (1-D) filled with the next ``out.size`` values."""
        done = 0
        n = out.size
        while done < n:
            if self._pos >= self.BLOCK:
                self._refill()
            k = min(n - done, self.BLOCK - self._pos)
            out[done : done + k] = self._block[self._pos : self._pos + k]
            self._pos += k
            done += k
        return out


class _Channel:
    """One analogue channel with a fixed offset and gain drawn from the seed."""

    def __init__(self, cfg: VoltageSensorConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.offset = float(rng.normal(0.0, cfg.offset_v)) if cfg.offset_v > 0 else 0.0
        self.gain = float(rng.normal(0.0, cfg.gain_error)) if cfg.gain_error > 0 else 0.0
        # the constants of read(), looked up once (a reading is taken every 10 ms)
        self._k = (1.0 + self.gain, self.offset, cfg.noise_v, cfg.resolution_v, cfg.full_scale_v)

    def read(self, true_v: float, noise: float) -> float:
        gain, offset, noise_v, lsb, fs = self._k
        return _quantise(true_v * gain + offset + noise * noise_v, lsb, -fs, fs)


class Sensors:
    """The pack's measurement chain. ``measure()`` samples every sensor once."""

    def __init__(self, cfg: Config, pack: Pack):
        self._pack = pack
        sc = cfg.sensors
        self.cfg = sc
        rng = np.random.default_rng(sc.seed)
        self._noise = _NormalStream(np.random.default_rng([sc.seed, 1]))  # per-sample noise
        n_s = pack.n_series
        cv = sc.cell_voltage
        self._cv_gain = rng.normal(0.0, cv.gain_error, n_s) if cv.gain_error > 0 else np.zeros(n_s)
        self._cv_offset = rng.normal(0.0, cv.offset_v, n_s) if cv.offset_v > 0 else np.zeros(n_s)
        self._wire_open = np.zeros(n_s + 1, dtype=np.bool_)
        self._cv_noise = np.zeros(n_s)

        tc = sc.temperature
        if tc.cells:
            cells = np.asarray(tc.cells, dtype=np.int64)
        else:
            k = tc.cells_per_sensor
            starts = np.arange(0, pack.n_cells, k)
            block_end = np.minimum(starts + k, pack.n_cells) - 1
            if tc.placement == "first":
                cells = starts
            elif tc.placement == "last":
                cells = block_end
            else:
                cells = (starts + block_end) // 2
        self.temp_sensor_cells = cells.astype(np.int64)
        n_t = cells.size
        self._t_offset = rng.normal(0.0, tc.offset_c, n_t) if tc.offset_c > 0 else np.zeros(n_t)
        self._t_mode = np.zeros(n_t, dtype=np.int64)
        self._t_last = np.full(n_t, np.nan)
        self._t_noise = np.zeros(n_t)

        self._i_offset_fault_a = 0.0
        ic = sc.current
        self._i_k = (1.0 + ic.gain_error, ic.offset_a, ic.noise_a, ic.resolution_a, ic.full_scale_a)
        self._pack_ch = _Channel(sc.pack_voltage, rng)
        self._bus_ch = _Channel(sc.bus_voltage, rng)

    @property
    def n_temp_sensors(self) -> int:
        return int(self.temp_sensor_cells.size)

    # ------------------------------------------------------------------ sampling

    def cell_voltages(self) -> np.ndarray:
        """Sample the cell-voltage ADC of every series group, V."""
        return self._cell_voltages(self._noise.fill(self._cv_noise))

    def _cell_voltages(self, noise: np.ndarray) -> np.ndarray:
        cv = self.cfg.cell_voltage
        out = np.empty(self._pack.n_series)
        sense_cell_voltages(
            self._pack.group_voltage_v,
            self._cv_gain,
            self._cv_offset,
            noise,
            cv.noise_v,
            cv.resolution_v,
            cv.full_scale_v,
            self._wire_open,
            out,
        )
        return out

    def temperatures(self) -> np.ndarray:
        """Sample every temperature sensor, degC (faults applied)."""
        return self._temperatures(self._noise.fill(self._t_noise), self._t_last)

    def _temperatures(self, noise: np.ndarray, last: np.ndarray) -> np.ndarray:
        tc = self.cfg.temperature
        out = np.empty(noise.size)
        sense_temperatures(
            self._pack._x[L.X_TEMP],
            self.temp_sensor_cells,
            self._t_offset,
            noise,
            tc.noise_c,
            tc.resolution_c,
            self._t_mode,
            last,
            tc.open_reading_c,
            tc.short_reading_c,
            out,
        )
        return out

    def current(self) -> float:
        """Sample the pack current sensor, A (+ = discharge)."""
        return self._current(self._noise.scalar())

    def _current(self, noise: float) -> float:
        gain, offset, noise_a, lsb, fs = self._i_k
        i = self._pack.current_a * gain + offset + self._i_offset_fault_a + noise * noise_a
        return _quantise(i, lsb, -fs, fs)

    def pack_voltage(self) -> float:
        return self._pack_ch.read(self._pack.voltage_v, self._noise.scalar())

    def bus_voltage(self) -> float:
        return self._bus_ch.read(self._pack.contactors.bus_voltage_v, self._noise.scalar())

    def measure(self) -> Measurement:
        """Sample every sensor once (one draw of noise for the whole sample)."""
        pack = self._pack
        n_s, n_t = self._cv_noise.size, self._t_noise.size
        noise = self._noise.fill(np.empty(n_s + n_t + 3))
        tail = noise[n_s + n_t :].tolist()
        return Measurement(
            time_s=pack.time_s,
            cell_voltage_v=self._cell_voltages(noise[:n_s]),
            temp_c=self._temperatures(noise[n_s : n_s + n_t], self._t_last),
            current_a=self._current(tail[0]),
            pack_voltage_v=self._pack_ch.read(pack.voltage_v, tail[1]),
            bus_voltage_v=self._bus_ch.read(pack.contactors.bus_voltage_v, tail[2]),
            contactor_feedback=pack.contactors.actual,
        )

    def warm_up(self) -> None:
        """Compile (or load) the sensor kernels without drawing noise or changing state."""
        self._cell_voltages(np.zeros(self._cv_noise.size))
        self._temperatures(np.zeros(self._t_noise.size), self._t_last.copy())

    # ------------------------------------------------------------------ faults

    def open_sense_wire(self, wire: int, is_open: bool = True) -> None:
        """Open (or reconnect) sense wire ``wire`` (0..n_series; wire k is below group k)."""
        n = self._pack.n_series
        if not 0 <= wire <= n:
            raise InputError(f"sense wire: index {wire} outside 0..{n}")
        self._wire_open[wire] = is_open

    def set_temp_sensor_fault(self, sensor: int, mode: str) -> None:
        """Fault a temperature sensor: ``ok``, ``stuck`` (holds), ``open`` or ``short``."""
        if not 0 <= sensor < self.n_temp_sensors:
            raise InputError(
                f"temperature sensor: index {sensor} outside 0..{self.n_temp_sensors - 1}"
            )
        if mode not in TEMP_SENSOR_MODES:
            raise InputError(
                f"temperature sensor fault {mode!r} unknown; valid: {', '.join(TEMP_SENSOR_MODES)}"
            )
        self._t_mode[sensor] = TEMP_SENSOR_MODES[mode]

    def set_current_offset_fault(self, offset_a: float) -> None:
        """An extra current-sensor offset, A (0 removes it)."""
        if not math.isfinite(offset_a):
            raise InputError(f"current sensor offset: must be finite, got {offset_a}")
        self._i_offset_fault_a = float(offset_a)

    def clear_faults(self) -> None:
        self._wire_open[:] = False
        self._t_mode[:] = 0
        self._i_offset_fault_a = 0.0

    def active_faults(self) -> list[str]:
        names = {v: k for k, v in TEMP_SENSOR_MODES.items()}
        out = [f"sense wire {w} open" for w in np.flatnonzero(self._wire_open)]
        out += [
            f"temperature sensor {k} {names[int(self._t_mode[k])]}"
            for k in np.flatnonzero(self._t_mode)
        ]
        if self._i_offset_fault_a:
            out.append(f"current sensor offset {self._i_offset_fault_a:+.3f} A")
        return out
