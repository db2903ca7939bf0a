"""The HIL bench: pack, vehicle and charger around a device under test, on CAN only.

A :class:`Bench` is what one HIL test runs on. It plays the parts of the
system that are not the device under test (DUT): the pack with its cell
monitoring units and power distribution unit (the plant), the vehicle
controller (a :class:`TesterVcu` the test drives) and the charger. The DUT is
either the emulated BMS (``emulated``: built here, run on the same clock, in
virtual time unless a speed is given) or a BMS on a CAN interface
(``external``: real hardware, or the emulator in another process; real time).

The suite judges the DUT through its CAN frames only: :class:`Monitor` sees
every frame the DUT sends, decodes it through the binding (so a user's DBC
works unchanged), and keeps per message the receive times, the alive counter
and CRC checks. Nothing here reads the emulated firmware's state.
:class:`Faults` injects faults into the plant, its sensors and the frames the
bench sends; :class:`Recorder` samples truth and reports for the report's plots.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import numpy as np

from bms.canbus.binding import BoundMessage, Slot, load_binding
from bms.canbus.bus import BusSpec
from bms.canbus.link import frame_crc
from bms.canbus.nodes import LEVEL_LABEL, PackNode, VcuNode
from bms.canbus.vocab import BMS_STATES
from bms.config import Config, load_config, preset
from bms.errors import BmsError, ConfigError
from bms.plant.pack import Pack
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase

__all__ = [
    "Bench",
    "DeviceError",
    "Faults",
    "HilSetup",
    "HilTimeout",
    "Monitor",
    "Recorder",
    "TesterVcu",
]

DUT_ROLE = "bms"
DEFECTS = ("", "no-overvoltage-protection", "soc-offset", "slow-state")


class HilTimeout(AssertionError):
    """A condition the test waited for did not come within its timeout."""


class DeviceError(AssertionError):
    """The device under test is silent, or sends what its DBC does not describe."""


@dataclass(frozen=True)
class HilSetup:
    """The bench's setup, from the pytest options (each has an environment variable)."""

    dut: str = "emulated"  # emulated | external
    interface: str = "virtual"
    channel: str = ""
    bitrate: int = 500_000
    kwargs: dict[str, Any] = field(default_factory=dict)
    dbc: tuple[str, ...] | None = None
    binding: str | None = None
    speed: float | None = None  # None: virtual time (emulated device only)
    config: str | None = None  # a pack configuration (TOML) or a preset name
    defect: str = ""  # an emulated device with a known defect (the suite must catch it)
    report_dir: Path = Path("reports/hil")
    trace: bool = True
    day_s: float | None = 900.0  # the city-bus day's route played by the estimation test

    @property
    def virtual(self) -> bool:
        return self.speed is None

    def describe(self) -> dict[str, str]:
        clock = "virtual time" if self.speed is None else f"real time x{self.speed:g}"
        dev = self.dut if not self.defect else f"{self.dut} (defect: {self.defect})"
        bus = "in-process (no bus)" if self.dut == "emulated" and self.virtual else ""
        return {
            "device under test": dev,
            "CAN": bus or f"{self.interface} {self.channel} @ {self.bitrate} bit/s",
            "bus options": ", ".join(f"{k}={v}" for k, v in self.kwargs.items()) or "-",
            "DBC": ", ".join(self.dbc) if self.dbc else "as the binding names",
            "binding": self.binding or "dbc/binding.toml (built-in)",
            "pack": self.config or "bus (built-in)",
            "clock": clock,
            "city-bus day played": "whole day" if self.day_s is None else f"{self.day_s:g} s",
        }

    def pack_config(self) -> Config:
        if not self.config:
            return Config()
        if self.config.endswith(".toml") or os.sep in self.config:
            return load_config(self.config)
        return preset(self.config)


# ---------------------------------------------------------------------------- the vehicle


class TesterVcu(VcuNode):
    """The vehicle controller, driven by the test: mode and contactor requests, fault
    reset, and the current the inverter draws (by default cut to the device's limits)."""

    def __init__(self, pack: PackNode | None, one_c_a: float):
        super().__init__(Mission("hil", [Phase("park", 1e12)], one_c_a), pack, one_c_a)
        self.mode = "Standby"
        self.contactors = "Open"
        self.reset_request = False
        self.draw_a = 0.0
        self.respect_limits = True
        self.profile: np.ndarray | None = None
        self.profile_dt_s = 0.1
        self.profile_t0_s = 0.0

    def request(self, mode: str, contactors: str) -> None:
        """``mode``: Standby, Drive or Charge; ``contactors``: Open or Close."""
        self.mode, self.contactors = mode, contactors

    def drive(self, current_a: float, respect_limits: bool = True) -> None:
        """Draw ``current_a`` (+ = discharge) whenever the device reports closed contactors."""
        self.draw_a, self.respect_limits, self.profile = current_a, respect_limits, None

    def play(self, t_s: float, profile_a: np.ndarray, dt_s: float) -> None:
        """Draw a current profile (one value per ``dt_s``) from ``t_s`` on, within limits."""
        self.profile, self.profile_dt_s, self.profile_t0_s = profile_a, dt_s, t_s
        self.respect_limits = True

    def step(self, t_s: float, dt_s: float) -> None:
        o = self.outputs
        o["mode_request"], o["contactor_request"] = self.mode, self.contactors
        o["fault_reset"] = self.reset_request
        o["vcu_state"] = "Driving" if self.mode == "Drive" else "Ready"
        want = self.draw_a
        if self.profile is not None:
            k = int((t_s - self.profile_t0_s) / self.profile_dt_s + 1e-9)
            want = float(self.profile[k]) if 0 <= k < self.profile.size else 0.0
        inp = self.inputs
        i = 0.0
        if inp.get("bms_state") in ("ClosedDrive", "ClosedCharge"):
            i = self.within_limits(want) if self.respect_limits else want
        if i != self.demand_a:
            self.demand_a = i
            if self.pack is not None:
                self.pack.set_load(t_s, demand_a=i)


# ---------------------------------------------------------------------------- the judge


@dataclass
class MessageRecord:
    """What the monitor saw of one of the device's messages."""

    bm: BoundMessage
    times: array = field(default_factory=lambda: array("d"))  # receive times, s
    frames: int = 0
    bad_crc: int = 0
    bad_dlc: int = 0
    decode_errors: int = 0
    counter_errors: int = 0
    last_counter: int = -1
    last: dict[int, bytes] = field(default_factory=dict)  # page (or 0) -> last valid bytes
    last_t: float = -math.inf
    decoded: dict[int, dict[str, Any]] = field(default_factory=dict)

    def _since(self, since_s: float) -> np.ndarray:
        t = np.frombuffer(self.times, dtype=np.float64) if len(self.times) else np.zeros(0)
        return t[t >= since_s]

    def period_stats(self, since_s: float = -math.inf) -> tuple[float, float, float, int]:
        """Mean, lowest and highest interval between frames (of one page: a paged message
        sends each page once per period) after ``since_s``; and the number of intervals."""
        n_pages = max(len(self.bm.pages), 1)
        t = self._since(since_s)
        if t.size < n_pages + 1:
            return math.nan, math.nan, math.nan, 0
        d = t[n_pages:] - t[:-n_pages]
        return float(d.mean()), float(d.min()), float(d.max()), int(d.size)

    def median_interval(self, since_s: float = -math.inf) -> float:
        n_pages = max(len(self.bm.pages), 1)
        t = self._since(since_s)
        if t.size < n_pages + 1:
            return math.nan
        return float(np.median(t[n_pages:] - t[:-n_pages]))


class Monitor:
    """Every frame the device sends, checked and decoded through the binding."""

    def __init__(self, emu: Emulator, role: str = DUT_ROLE):
        self.emu = emu
        self.binding = emu.binding
        self.role = role
        self.records: dict[tuple[int, bool], MessageRecord] = {}
        self.by_value: dict[str, tuple[MessageRecord, Slot]] = {}
        self.arrays: dict[str, MessageRecord] = {}
        for bm in self.binding.messages.values():
            if bm.sender != role:
                continue
            rec = MessageRecord(bm)
            self.records[bm.key] = rec
            if bm.array is not None:
                self.arrays.setdefault(bm.array, rec)
            for page in bm.pages:
                for s in page.slots:
                    if s.index < 0:
                        self.by_value.setdefault(s.value, (rec, s))
        self.unknown_frames = 0
        self.first_frame_s: float | None = None
        self.last_frame_s = -math.inf
        self.garbage: list[str] = []
        emu.link.taps.append(self._tap)

    def _tap(self, t_s: float, bm: BoundMessage | None, fid: int, ext: bool, data: bytes) -> None:
        if bm is None:
            if not self.emu.link.binding.known.get((fid, ext)):
                self.unknown_frames += 1
                if len(self.garbage) < 20:
                    self.garbage.append(f"t={t_s:.3f} s id 0x{fid:X}: {data.hex()}")
            return
        rec = self.records.get(bm.key)
        if rec is None:
            return
        if self.first_frame_s is None:
            self.first_frame_s = t_s
        self.last_frame_s = t_s
        rec.frames += 1
        rec.times.append(t_s)
        codec = bm.codec
        if len(data) != codec.length:
            rec.bad_dlc += 1
            return
        if bm.crc_byte >= 0 and frame_crc(bm, data) != data[bm.crc_byte]:
            rec.bad_crc += 1
            return
        key = bm.page_signal or codec.multiplexer
        if bm.counter is None and not key:
            rec.last[0] = data
            rec.last_t = t_s
            rec.decoded.pop(0, None)
            return
        try:
            values = codec.decode(data)
        except (ValueError, KeyError):
            rec.decode_errors += 1  # counted and shown as a bad frame, never raised
            return
        if bm.counter is not None:
            c = int(values[bm.counter])
            if rec.last_counter >= 0 and c != (rec.last_counter + 1) % bm.counter_mod:
                rec.counter_errors += 1
            rec.last_counter = c
        page = int(values.get(key, 0)) if key else 0
        rec.last[page] = data
        rec.decoded[page] = values
        rec.last_t = t_s

    # ------------------------------------------------------------------ values

    def _values(self, rec: MessageRecord, page: int) -> dict[str, Any] | None:
        v = rec.decoded.get(page)
        if v is None:
            data = rec.last.get(page)
            if data is None:
                return None
            try:
                v = rec.decoded[page] = rec.bm.codec.decode(data)
            except (ValueError, KeyError):
                rec.decode_errors += 1
                rec.last.pop(page)
                return None
        return v

    def value(self, name: str, default: Any = None) -> Any:
        """The device's latest report of value ``name`` (a name of the binding's
        vocabulary: ``bms_state``, ``soc_display_perc`` ...), in the vocabulary's unit;
        an enumeration as its label; ``default`` before the first frame."""
        hit = self.by_value.get(name)
        if hit is None:
            raise KeyError(f"the device sends no message carrying {name!r} in this binding")
        rec, s = hit
        page = 0
        key = rec.bm.page_signal or rec.bm.codec.multiplexer
        if key:
            for p in rec.bm.pages:
                if s in p.slots:
                    page = int(p.fixed.get(key, 0))
                    break
        vals = self._values(rec, page)
        if vals is None:
            return default
        v = vals[s.signal]
        if s.kind == "enum":
            return s.to_label.get(int(v))
        if s.kind == "flag":
            return bool(v)
        if s.kind == "count":
            return int(v)
        return v / s.factor

    def array(self, name: str) -> np.ndarray:
        """An array value (``cell_voltage_v``, ``bleed``) from the latest frame of each page;
        NaN where no page has come yet."""
        rec = self.arrays.get(name)
        if rec is None:
            raise KeyError(f"the device sends no array {name!r} in this binding")
        n = self.emu.sizes.get(name, 0)
        out = np.full(n, math.nan)
        key = rec.bm.page_signal or rec.bm.codec.multiplexer
        for p in rec.bm.pages:
            vals = self._values(rec, int(p.fixed.get(key, 0)) if key else 0)
            if vals is None:
                continue
            for s in p.slots:
                if 0 <= s.index < n:
                    v = vals[s.signal]
                    out[s.index] = (v != 0) if s.kind == "flag" else v / s.factor
        return out

    def record(self, message: str) -> MessageRecord:
        bm = self.binding.messages.get(message)
        if bm is None or bm.key not in self.records:
            raise KeyError(f"{message!r} is not a message the device sends in this binding")
        return self.records[bm.key]

    def message_of(self, value: str) -> str:
        return self.by_value[value][0].bm.name

    @property
    def silent(self) -> bool:
        return self.first_frame_s is None


# ---------------------------------------------------------------------------- faults


class Faults:
    """Faults the bench injects: into the plant, its sensors, and the frames it sends."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.pack = bench.emu.pack
        self._rules: dict[str, dict[str, Any]] = {}
        self._count: dict[str, int] = {}
        bench.emu.link.tx_filter = self._filter

    # plant and sensors
    def cell_soc(self, group: int, soc: float) -> None:
        """Move one series group's cells to ``soc`` (a cell out of balance; near 0 or 1 it
        crosses its voltage limits under load)."""
        p = self.pack
        self.bench.pack_node.advance(self.bench.now_s)
        s = p.soc.copy()
        s[group, :] = soc
        p.set_soc(s.reshape(-1))

    def weak_cell(self, group: int, capacity_factor: float, resistance_factor: float) -> None:
        """Age the cells of one series group: capacity and resistance scaled."""
        self.bench.pack_node.advance(self.bench.now_s)
        for c in range(self.pack.n_parallel):
            self.pack.inject_weak_cell(
                self.pack.cell_index(group, c), capacity_factor, resistance_factor
            )

    def cell_voltage(self, group: int, direction: str) -> None:
        """Prepare one group to cross its voltage limit under load: ``over`` (full and
        degraded, resistance x6: the next charge pushes it over) or ``under`` (nearly
        empty and degraded: the next discharge pulls it under)."""
        if direction not in ("over", "under"):
            raise ValueError(f"cell_voltage: use over or under, got {direction!r}")
        self.cell_soc(group, 1.0 if direction == "over" else 0.02)
        self.weak_cell(group, 1.0, 6.0)

    def cell_temp(self, cells: slice | list[int] | int, temp_c: float) -> None:
        """Heat or cool cells to ``temp_c`` (the thermal model takes it from there)."""
        self.bench.pack_node.advance(self.bench.now_s)
        t = self.pack.temp_c.reshape(-1).copy()
        t[cells] = temp_c
        self.pack.set_temp_c(t)

    def ambient(self, temp_c: float, cells_too: bool = True) -> None:
        self.bench.pack_node.advance(self.bench.now_s)
        self.pack.ambient_temp_c = temp_c
        if cells_too:
            self.pack.set_temp_c(temp_c)

    def open_sense_wire(self, wire: int) -> None:
        self.pack.sensors.open_sense_wire(wire, True)

    def temp_sensor(self, sensor: int, mode: str) -> None:
        """``mode``: open, short or stuck (see the plant's sensors)."""
        self.pack.sensors.set_temp_sensor_fault(sensor, mode)

    def internal_short(self, cell: int, resistance_ohm: float) -> None:
        self.bench.pack_node.advance(self.bench.now_s)
        self.pack.inject_internal_short(cell, resistance_ohm)

    def current_offset(self, offset_a: float) -> None:
        self.pack.sensors.set_current_offset_fault(offset_a)

    # frames the bench sends
    def drop(self, message: str, every: int = 1) -> None:
        """Drop frames of ``message`` (every one, or one in ``every``)."""
        self._rule(message, drop=every)

    def delay(self, message: str, delay_s: float) -> None:
        """Hold every frame of ``message`` back by ``delay_s``."""
        self._rule(message, delay=delay_s)

    def corrupt(self, message: str, what: str = "crc") -> None:
        """Corrupt every frame of ``message``: ``crc`` (a wrong CRC), ``counter`` (the alive
        counter frozen), ``dlc`` (one byte short)."""
        if what not in ("crc", "counter", "dlc"):
            raise ValueError(f"corrupt: unknown {what!r}; use crc, counter or dlc")
        self._rule(message, corrupt=what)

    def heartbeat_loss(self) -> None:
        """The vehicle controller goes silent: no heartbeat and no commands."""
        for value in ("vcu_state", "mode_request"):
            try:
                self.drop(self.bench.message_to_device(value))
            except KeyError:
                continue

    def clear_frames(self) -> None:
        self._rules.clear()
        self.bench.emu.link.filtered.clear()

    def clear(self) -> None:
        """Every fault gone: plant, sensors and frames."""
        self.clear_frames()
        self.pack.sensors.clear_faults()
        self.pack.clear_faults()

    def _rule(self, message: str, **rule: Any) -> None:
        bm = self.bench.emu.binding.messages.get(message)
        if bm is None or bm.sender == DUT_ROLE:
            raise ValueError(f"{message!r} is not a message the bench sends in this binding")
        self._rules.setdefault(message, {}).update(rule)
        self.bench.emu.link.filtered.add(message)

    def _filter(self, t_s: float, bm: BoundMessage, data: bytearray) -> bytes | None:
        rule = self._rules.get(bm.name)
        if not rule:
            return bytes(data)
        n = self._count[bm.name] = self._count.get(bm.name, 0) + 1
        every = rule.get("drop")
        if every and n % every == 0:
            return None
        what = rule.get("corrupt")
        if what == "crc" and bm.crc_byte >= 0:
            data[bm.crc_byte] ^= 0x5A
        elif what == "counter" and bm.counter is not None:
            values = bm.codec.decode(bytes(data))
            values[bm.counter] = 0
            if bm.crc is not None:
                values[bm.crc] = 0
            data = bytearray(bm.codec.encode(values))
            if bm.crc_byte >= 0:
                data[bm.crc_byte] = frame_crc(bm, data)
        elif what == "dlc":
            data = data[:-1]
        delay = rule.get("delay")
        if delay:
            held = bytes(data)
            name = bm.name
            link = self.bench.emu.link
            self.bench.emu.scheduler.at(t_s + delay, lambda t: link.emit(t, name, held))
            return None
        return bytes(data)


# ---------------------------------------------------------------------------- recording


class Recorder:
    """Truth (the plant) and reports (the device's frames), sampled for the plots."""

    COLUMNS = (
        "t_s",
        "soc_true_perc",
        "soc_true_min_perc",
        "soc_true_max_perc",
        "soc_reported_perc",
        "cell_v_true_min",
        "cell_v_true_max",
        "cell_v_reported_min",
        "cell_v_reported_max",
        "current_a",
        "current_reported_a",
        "charge_limit_a",
        "discharge_limit_a",
        "contactors_closed",
        "fault_latched",
        "protection_level",
        "bms_state",
    )

    MAX_POINTS = 20_000  # per plot: a whole day sampled every 0.1 s is thinned to this

    def __init__(self, bench: Bench, every_s: float):
        self.bench = bench
        self.data = array("d")  # rows of len(COLUMNS), flat (a day at 0.1 s: 40 MB)
        self.every_s = every_s

    def sample(self, t_s: float) -> None:
        b = self.bench
        pack = b.emu.pack
        mon = b.monitor
        soc = pack.soc
        v = pack.group_voltage_v
        state = mon.value("bms_state") if "bms_state" in mon.by_value else None
        level = mon.value("protection_level") if "protection_level" in mon.by_value else None

        def num(name: str) -> float:
            if name not in mon.by_value:
                return math.nan
            x = mon.value(name)
            return math.nan if x is None else float(x)

        self.data.extend(
            (
                t_s,
                100.0 * float(soc.mean()),
                100.0 * float(soc.min()),
                100.0 * float(soc.max()),
                num("soc_mean_perc"),
                float(v.min()),
                float(v.max()),
                num("min_cell_voltage_v"),
                num("max_cell_voltage_v"),
                float(pack.current_a),
                num("current_a"),
                num("charge_current_limit_a"),
                num("discharge_current_limit_a"),
                1.0 if pack.contactors.closed else 0.0,
                num("fault_latched"),
                float(LEVEL_LABEL.index(level)) if level in LEVEL_LABEL else math.nan,
                float(BMS_STATES.index(state)) if state in BMS_STATES else math.nan,
            )
        )

    def series(self) -> dict[str, Any]:
        """Every column as an array (thinned to at most ``MAX_POINTS`` samples)."""
        n_col = len(self.COLUMNS)
        rows = np.frombuffer(self.data, dtype=np.float64).reshape(-1, n_col) if self.data else None
        if rows is None:
            return {"t_s": np.zeros(0)}
        step = max(1, -(-rows.shape[0] // self.MAX_POINTS))
        out: dict[str, Any] = dict(zip(self.COLUMNS, rows[::step].T.copy(), strict=True))
        out["bms_state_labels"] = BMS_STATES
        return out


# ---------------------------------------------------------------------------- the bench

_channels = itertools.count()


class Bench:
    """Pack, vehicle and charger around the device under test, for one test."""

    RESET_WINDOW_S = 6.0  # power-up: how long to keep clearing faults left from before

    def __init__(
        self,
        setup: HilSetup,
        *,
        name: str = "hil",
        cfg: Config | None = None,
        bus: can.BusABC | None = None,
        trace_path: Path | None = None,
        nvm_path: Path | None = None,
        record_every_s: float = 0.1,
    ):
        self.setup = setup
        self.name = name
        cfg = cfg if cfg is not None else setup.pack_config()
        emulated = setup.dut == "emulated"
        if emulated and setup.defect:
            cfg = _with_defect(cfg, setup.defect)
        self.cfg = cfg
        roles = ("pack", "vcu", "charger") + ((DUT_ROLE,) if emulated else ())
        spec: can.BusABC | BusSpec | None = bus
        if bus is None and not (emulated and setup.virtual):
            spec = BusSpec(setup.interface, setup.channel or None, setup.bitrate, setup.kwargs)
        speed = setup.speed if not (setup.dut == "external" and setup.speed is None) else 1.0
        self.trace_path = trace_path
        self.emu = Emulator(
            cfg,
            nodes=roles,
            binding=setup.binding,
            dbc=setup.dbc,
            bus=spec,
            speed=speed,
            log_path=trace_path,
            nvm_path=nvm_path if emulated else None,
        )
        emu = self.emu
        if emulated and setup.defect == "slow-state":
            bm = emu.binding.messages[_message_carrying(emu, "bms_state")]
            doubled = 2 * (bm.period_s or 0.0)
            emu.binding.messages[bm.name] = dataclasses.replace(bm, period_s=doubled)
        if emulated and setup.defect == "soc-offset":
            node = emu.nodes[DUT_ROLE]
            orig = node.prepare

            def prepare_with_offset(t_s: float, message: str) -> None:
                orig(t_s, message)
                o = node.outputs
                for k in ("soc_display_perc", "soc_min_perc", "soc_max_perc", "soc_mean_perc"):
                    if k in o:
                        o[k] = min(100.0, o[k] + 8.0)

            node.prepare = prepare_with_offset  # type: ignore[method-assign]
        pack_node = emu.nodes["pack"]
        assert isinstance(pack_node, PackNode)
        self.pack_node = pack_node
        self.plant = emu.pack
        one_c = emu.pack.chemistry.capacity_ah * cfg.pack.parallel
        self.one_c_a = one_c
        self.vcu = TesterVcu(pack_node, one_c)
        emu.nodes["vcu"] = self.vcu
        self.monitor = Monitor(emu)
        self.faults = Faults(self)
        self.recorder = Recorder(self, record_every_s)
        self.emulated = emulated
        self.raw_bus: can.BusABC | None = None  # the test's own bus to the device (fixture)
        self.started = False
        self.wall_start = time.perf_counter()

    # ------------------------------------------------------------------ time

    @property
    def now_s(self) -> float:
        return self.emu.scheduler.now_s

    @property
    def virtual(self) -> bool:
        return not self.emu.scheduler.realtime

    def start(self) -> None:
        if self.started:
            return
        self.emu.start()
        self.emu.scheduler.every(
            self.recorder.every_s, self.recorder.sample, name="hil recorder", priority=99.0
        )
        self.started = True

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: simulated in virtual time, waited in real time."""
        self.start()
        self.emu.advance_to(self.now_s + seconds)

    def wait_for(
        self,
        condition: Callable[[], bool],
        timeout_s: float,
        what: str = "",
        step_s: float | None = None,
        show: tuple[str, ...] = (),
    ) -> float:
        """Advance until ``condition()`` holds; returns the time it took. Fails the test
        with a clear message after ``timeout_s`` (simulated or real seconds); ``show``
        names device values to print in that message."""
        self.start()
        t0 = self.now_s
        step = step_s if step_s is not None else (0.01 if self.virtual else 0.02)
        while True:
            if condition():
                return self.now_s - t0
            if self.now_s - t0 >= timeout_s - 1e-9:
                raise HilTimeout(self._timeout_message(what or "condition", timeout_s, show))
            self.emu.advance_to(min(self.now_s + step, t0 + timeout_s))

    def _timeout_message(self, what: str, timeout_s: float, show: tuple[str, ...]) -> str:
        mon = self.monitor
        if mon.silent:
            hint = (
                "the device sent no frame at all: is it powered, and on this bus "
                f"({self.setup.interface} {self.setup.channel} @ {self.setup.bitrate} bit/s)?"
            )
            if mon.unknown_frames:
                hint = (
                    f"the device sent {mon.unknown_frames} frames with identifiers in no "
                    f"DBC of the binding (first: {mon.garbage[0]}): wrong DBC or binding?"
                )
            return f"{what}: not within {timeout_s:g} s; {hint}"
        last = max((r.last_t for r in mon.records.values()), default=-math.inf)
        silent_s = self.now_s - max(last, mon.last_frame_s)
        if silent_s > 1.0:
            return (
                f"{what}: not within {timeout_s:g} s; the device has sent nothing for "
                f"{silent_s:.1f} s (its last frame at t={mon.last_frame_s:.2f} s): did it "
                "reset, lose power or leave the bus?"
            )
        parts = []
        for name in show:
            try:
                parts.append(f"{name}={mon.value(name)!r}")
            except KeyError:
                parts.append(f"{name}=(not in the binding)")
        bad = sum(r.bad_crc + r.bad_dlc + r.decode_errors for r in mon.records.values())
        good = sum(r.frames for r in mon.records.values()) - bad
        if bad and good <= 0:
            return (
                f"{what}: not within {timeout_s:g} s; all {bad} frames of the device on its "
                "identifiers failed their CRC or length check or did not decode (wrong DBC, "
                "CRC algorithm or a broken device?)"
            )
        if bad:
            parts.append(f"{bad} of its frames failed their CRC or length check or did not decode")
        raised = [
            f"{name}={mon.value(name)}"
            for name in mon.by_value
            if name.startswith("level_") and mon.value(name) not in (None, "Ok")
        ]
        if raised:
            parts.append("raised: " + ", ".join(raised))
        seen = f" (device reports: {', '.join(parts)})" if parts else ""
        return f"{what}: not within {timeout_s:g} s{seen}"

    def value(self, name: str, default: Any = None) -> Any:
        return self.monitor.value(name, default)

    def message_to_device(self, value: str) -> str:
        """The name of the bench's message that carries ``value`` to the device."""
        name = self.emu._carrying(DUT_ROLE, value, rx=True, required=False)
        if not name:
            raise KeyError(f"no message of the binding carries {value!r} to the device")
        return name

    # ------------------------------------------------------------------ procedures

    def power_up(self, timeout_s: float = 5.0) -> float:
        """Start the bench and wait until the device reports its state and cell data (a
        minimum cell voltage above 0 V). A device that was running before this test (a
        real BMS on the bench) may hold faults latched from the last one (its pack went
        away): those are cleared as an operator would, with fault resets. Then one more
        100 ms, so that every report has been refreshed once. Returns the time taken."""
        self.start()
        t0 = self.now_s
        self.wait_for(
            lambda: (
                self.value("bms_state") is not None
                and (self.value("min_cell_voltage_v") or 0.0) > 0.0
            ),
            timeout_s,
            "the device reporting its state and cell voltages after power-up",
            show=("bms_state", "min_cell_voltage_v"),
        )
        # a device left closed or faulted by the last test first opens (the vehicle asks
        # for Standby) or has its faults cleared: a fault clears only once its cause has
        # been gone for the check's clear time (2 s for the command timeout here)
        deadline = t0 + timeout_s + self.RESET_WINDOW_S
        while self.value("bms_state") != "Standby" or self.value("fault_latched", False):
            if self.now_s >= deadline:
                raise HilTimeout(
                    self._timeout_message(
                        "the device in Standby, no fault latched, after power-up",
                        timeout_s + self.RESET_WINDOW_S,
                        ("bms_state", "protection_level", "contactor_fault"),
                    )
                )
            if self.value("bms_state") == "Fault" or self.value("fault_latched", False):
                self.fault_reset()
            else:
                self.advance(0.1)
        took = self.now_s - t0
        self.advance(0.25)
        return took

    def close(self, mode: str = "Drive", timeout_s: float = 5.0) -> float:
        """Ask for closed contactors in ``mode``; wait until the device reports them closed."""
        self.vcu.request(mode, "Close")
        target = "ClosedDrive" if mode == "Drive" else "ClosedCharge"
        return self.wait_for(
            lambda: self.value("bms_state") == target,
            timeout_s,
            f"the device reaching {target}",
            show=("bms_state", "contactor_fault", "protection_level"),
        )

    def open(self, timeout_s: float = 3.0) -> float:
        self.vcu.request("Standby", "Open")
        return self.wait_for(
            lambda: self.value("bms_state") == "Standby" and not self.plant.contactors.closed,
            timeout_s,
            "the device back in Standby with the contactors open",
            show=("bms_state",),
        )

    def fault_reset(self, hold_s: float = 0.3) -> None:
        """Ask the device to clear latched faults (the VCU's reset flag, held ``hold_s``)."""
        self.vcu.reset_request = True
        self.advance(hold_s)
        self.vcu.reset_request = False
        self.advance(hold_s)

    # ------------------------------------------------------------------ end

    def leave_safe(self, timeout_s: float = 3.0) -> None:
        """End of a test on a device that outlives it: ask for Standby with no current and
        wait (at most ``timeout_s``) for the contactors to open, so that the next test does
        not start on a device that closes its pack the moment it appears."""
        if not self.started:
            return
        self.vcu.drive(0.0)
        self.vcu.request("Standby", "Open")
        self.vcu.reset_request = False
        self.faults.clear_frames()
        end = self.now_s + timeout_s
        while self.now_s < end and (
            self.plant.contactors.closed or self.plant.contactors.precharging
        ):
            self.advance(0.1)

    def close_bench(self) -> None:
        if not self.emulated:
            self.leave_safe()
        self.emu.close()


def check_setup(setup: HilSetup) -> None:
    """Raise the configuration's or the binding's error (a ConfigError naming the option)
    before any bench runs."""
    try:
        cfg = setup.pack_config()
    except BmsError as exc:
        raise ConfigError(f"--hil-config: {exc}") from None
    pack = Pack(cfg)
    n_s = cfg.pack.series
    sizes = {"cell_voltage_v": n_s, "temp_c": pack.sensors.n_temp_sensors, "bleed": n_s}
    roles = ("pack", "vcu", "charger") + ((DUT_ROLE,) if setup.dut == "emulated" else ())
    try:
        load_binding(setup.binding, sizes, roles, setup.dbc)
    except BmsError as exc:
        raise ConfigError(f"--binding/--dbc: {exc}") from None


def _message_carrying(emu: Emulator, value: str) -> str:
    for bm in emu.binding.messages.values():
        if bm.sender == DUT_ROLE and value in bm.values():
            return bm.name
    raise KeyError(value)


def _with_defect(cfg: Config, defect: str) -> Config:
    """The emulated device with a known defect, for showing that the suite catches it."""
    if defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; choose from {', '.join(DEFECTS[1:])}")
    if defect == "no-overvoltage-protection":
        prot = cfg.firmware.protection
        off = dataclasses.replace(prot.cell_overvoltage, warning=9.0, alarm=9.5, fault=10.0)
        fw = dataclasses.replace(
            cfg.firmware, protection=dataclasses.replace(prot, cell_overvoltage=off)
        )
        return dataclasses.replace(cfg, firmware=fw)
    return cfg


def new_channel(prefix: str = "hil") -> str:
    """A python-can virtual channel no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_channels)}"
