"""The emulator: nodes on one bus, driven by one scheduler.

``Emulator`` builds the nodes that run here (pack, bms, vcu, charger: any
subset; real hardware plays the others), checks the binding of the DBC
files against them, warms every numba kernel up, then runs them on virtual
time (deterministic, as fast as the CPU allows) or real time (absolute
deadlines). Every cyclic message goes out at its DBC period; a message in
pages sends them evenly over the period (``spread``) or all at once
(``burst``). Frames between local nodes are delivered from their bytes, as
on a bus, and also sent on the python-can bus for everyone else.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import numpy as np

from bms.canbus.binding import Binding, BoundMessage, load_binding
from bms.canbus.bus import BusSpec, open_bus, rx_pending
from bms.canbus.crc import CRC8
from bms.canbus.link import CanLink, matrix_load
from bms.canbus.nodes import (
    BmsNode,
    ChargerNode,
    Node,
    PackNode,
    VcuNode,
    extremes_kernel,
    rx_timeout_s,
)
from bms.canbus.vocab import ROLES
from bms.chemistry import load_chemistry
from bms.config import Config
from bms.errors import CanLinkError, ConfigError
from bms.firmware.bms import EmulatedBms
from bms.plant.pack import Pack
from bms.sim.clock import Scheduler
from bms.sim.mission import Mission, make_mission

__all__ = ["Emulator", "RunSummary", "parse_nodes"]

_log = logging.getLogger("bms.emulator")


def _step(node: VcuNode | ChargerNode, dt_s: float, t_s: float) -> None:
    node.step(t_s, dt_s)


LOG_SUFFIXES = (".asc", ".blf", ".log", ".csv", ".trc", ".mf4")


def parse_nodes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"pack,vcu"`` -> ("pack", "vcu"), checked; ``"all"`` is every node."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    if items == ["all"]:
        return ROLES
    bad = [s for s in items if s not in ROLES]
    if bad or not items:
        raise ConfigError(
            f"unknown node {', '.join(bad) or '(none)'}; choose from {', '.join(ROLES)} or all",
            field="--nodes",
        )
    return tuple(r for r in ROLES if r in items)


@dataclass
class RunSummary:
    """What a run did; ``to_dict`` is the machine-readable summary (--summary FILE.json)."""

    simulated_s: float = 0.0
    wall_s: float = 0.0
    nodes: tuple[str, ...] = ()
    bus: str = ""
    frames: dict[str, Any] = field(default_factory=dict)
    bus_load: float = 0.0
    bus_load_dbc: float = 0.0
    overruns: int = 0
    skipped_periods: int = 0
    soc_true: dict[str, float] = field(default_factory=dict)
    soc_estimated: dict[str, float] = field(default_factory=dict)
    faults_seen: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str = ""
    link_losses: int = 0
    link_down_s: float = 0.0

    @property
    def speed_factor(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "simulated_s": round(self.simulated_s, 6),
            "wall_s": round(self.wall_s, 3),
            "speed_factor": round(self.speed_factor, 2) if self.wall_s > 0 else None,
            "nodes": list(self.nodes),
            "bus": self.bus,
            **self.frames,
            "bus_load": round(self.bus_load, 4),
            "bus_load_dbc": round(self.bus_load_dbc, 4),
            "overruns": self.overruns,
            "skipped_periods": self.skipped_periods,
            "soc_true": self.soc_true,
            "soc_estimated": self.soc_estimated,
            "faults_seen": self.faults_seen,
            "phases": self.phases,
            "interrupted": self.interrupted,
            "link_losses": self.link_losses,
            "link_down_s": round(self.link_down_s, 3),
            "stopped_by": self.stopped_by,
        }


class Emulator:
    """Pack, BMS, VCU and charger nodes on one CAN bus (any subset of them)."""

    def __init__(
        self,
        cfg: Config | None = None,
        *,
        nodes: Iterable[str] = ROLES,
        binding: str | Path | None = None,
        dbc: Iterable[str | Path] | None = None,
        bus: can.BusABC | BusSpec | None = None,
        mission: Mission | None = None,
        speed: float | None = None,
        log_path: str | Path | None = None,
        nvm_path: str | Path | None = None,
        vcu_period_s: float = 0.1,
        charger_period_s: float = 0.1,
        spin_s: float = 0.002,
    ):
        self.cfg = cfg = cfg if cfg is not None else Config()
        self.roles = parse_nodes(list(nodes))
        chem = load_chemistry(cfg.pack.chemistry)
        self.pack = Pack(cfg, chem)  # sizes and sensor layout; the plant when "pack" runs here
        n_temp = self.pack.sensors.n_temp_sensors
        self.sizes = {"cell_voltage_v": cfg.pack.series, "temp_c": n_temp, "bleed": cfg.pack.series}
        self.binding: Binding = load_binding(binding, self.sizes, self.roles, dbc)
        b = self.binding
        one_c = chem.capacity_ah * cfg.pack.parallel
        self.mission = mission if mission is not None else make_mission("city-bus-day", one_c)

        self.nodes: dict[str, Node] = {}
        pack_node: PackNode | None = None
        if "pack" in self.roles:
            contactor = self._carrying("pack", "main_pos_command", rx=True)
            bleed = self._carrying("pack", "bleed", rx=True, required=False)
            pack_node = PackNode(
                self.pack,
                cfg,
                contactor,
                bleed,
                contactor_timeout_s=self._rx_timeout("contactor", contactor),
                bleed_timeout_s=self._rx_timeout("bleed", bleed),
            )
            pack_node.kinds = {m.name: frozenset(m.values()) for m in b.sent_by("pack")}
            self.nodes["pack"] = pack_node
        self.bms: EmulatedBms | None = None
        if "bms" in self.roles:
            self.bms = EmulatedBms(cfg, chem, self.pack.sensors.temp_sensor_cells, nvm_path)
            msgs = {
                "command": self._carrying("bms", "mode_request", rx=True),
                "heartbeat": self._carrying("bms", "vcu_state", rx=True, required=False),
                "current": self._carrying("bms", "current_a", rx=True),
                "voltages": self._carrying("bms", "link_voltage_v", rx=True),
            }
            cells = self._carrying("bms", "cell_voltage_v", rx=True, required=False)
            temps = self._carrying("bms", "temp_c", rx=True, required=False)
            bms_node = BmsNode(
                self.bms,
                cfg,
                n_temp,
                {k: v for k, v in msgs.items() if v},
                cell_data_timeout_s=self._rx_timeout("cells", cells),
                temp_data_timeout_s=self._rx_timeout("temps", temps),
                current_timeout_s=self._rx_timeout("current", msgs["current"]),
                heartbeat_timeout_s=self._rx_timeout("heartbeat", msgs["heartbeat"]),
                voltages_timeout_s=self._rx_timeout("voltages", msgs["voltages"]),
            )
            bms_node.kinds = {m.name: frozenset(m.values()) for m in b.sent_by("bms")}
            self._check_feedback_timeout()
            self.nodes["bms"] = bms_node
        if "vcu" in self.roles:
            self.nodes["vcu"] = VcuNode(self.mission, pack_node, one_c)
        if "charger" in self.roles:
            req = self._carrying("charger", "charge_enable", rx=True)
            self.nodes["charger"] = ChargerNode(
                pack_node, req, request_timeout_s=self._rx_timeout("charge_request", req)
            )

        if log_path is not None and Path(log_path).suffix.lower() not in LOG_SUFFIXES:
            raise ConfigError(
                f"unknown log format {Path(log_path).suffix or '(none)'}; use one of "
                f"{', '.join(LOG_SUFFIXES)}",
                field="--log",
            )
        self._rxq: queue.SimpleQueue[can.Message] = queue.SimpleQueue()
        self._rx_thread: threading.Thread | None = None
        self._stop_rx = threading.Event()
        self._writer: Any = None
        self.scheduler = Scheduler(speed)
        self._bus_spec: BusSpec | None = None
        self._own_bus = False
        if isinstance(bus, BusSpec):
            self._bus_spec = bus.resolved()
            self.bus: can.BusABC | None = open_bus(self._bus_spec)
            self._own_bus = True
        else:
            self.bus = bus
        self.bitrate = self._bus_spec.bitrate if self._bus_spec else 500_000
        if log_path is not None:
            try:
                self._writer = can.Logger(str(log_path))
            except (OSError, ValueError, ImportError, NotImplementedError) as exc:
                # (NotImplementedError: python-can's answer to a missing optional package)
                self.close()
                why = str(exc)
                if isinstance(exc, NotImplementedError) and "asammdf" in why:
                    why = ".mf4 needs the asammdf package (pip install asammdf)"
                    why += "; or use .asc, .blf or .log"
                raise ConfigError(f"cannot write {log_path}: {why}", field="--log") from None
        self._t0_wall = 0.0
        stamp = (lambda t: t) if speed is None else (lambda t: self._t0_wall + t)
        self.link = CanLink(b, self.nodes, self.bus, self._writer, timestamp=stamp)  # type: ignore[arg-type]
        self.link.on_send_error = self._on_send_error
        # real time: sleep until this long before a deadline, then spin (a sleeping
        # core wakes up late and cold, by 0.5-3 ms on a virtual machine)
        self.spin_s = spin_s
        self.faults_seen: list[str] = []
        self._status_prev = (0.0, 0, time.perf_counter())  # time, frames, wall at the last line
        self._lost_exc: BaseException | None = None
        self._rx_t_last = 0.0
        self.link_losses = 0
        self.link_down_s = 0.0
        self._lost_since = 0.0
        self._retry_at = 0.0
        self._retry_s = 0.5
        self._fault_set: set[str] = set()
        # virtual time: the bus that _rx_pending looks at (set at the first poll)
        self._polled_bus: can.BusABC | None = None
        self._rx_pending: Callable[[], int] = lambda: 1
        self._vcu_period_s = vcu_period_s
        self._charger_period_s = charger_period_s
        self.started = False

    # ------------------------------------------------------------------ set-up

    def _check_feedback_timeout(self) -> None:
        """The firmware waits ``feedback_timeout_s`` for a contactor's feedback to follow
        its command: on this matrix that is at least a command frame's period, a feedback
        frame's period and one firmware task. Shorter: every closing would fault."""
        cmd = self._carrying("bms", "main_pos_command", rx=False, required=False)
        fb = self._carrying("bms", "main_pos_feedback", rx=True, required=False)
        if not (cmd and fb):
            return
        cmd_s = self.binding.messages[cmd].period_s or 0.0
        fb_s = self.binding.messages[fb].period_s or 0.0
        round_trip = cmd_s + fb_s + self.cfg.firmware.measure_period_s
        have = self.cfg.firmware.contactors.feedback_timeout_s
        if have < round_trip + 1e-9:
            raise ConfigError(
                f"{have:g} s is too short for this CAN matrix: the command ({cmd}, every "
                f"{cmd_s * 1000:g} ms), its feedback ({fb}, every {fb_s * 1000:g} ms) and the "
                f"{self.cfg.firmware.measure_period_s * 1000:g} ms task take up to "
                f"{round_trip:g} s; set it above that",
                field="[firmware.contactors] feedback_timeout_s",
            )

    def _rx_timeout(self, role: str, message: str | None) -> float:
        """The receive timeout of ``message`` (``role``: which of the nodes' timeouts) from
        its DBC period (nodes.rx_timeout_s)."""
        bm = self.binding.messages.get(message) if message else None
        return rx_timeout_s(role, bm.period_s if bm is not None else None)

    def _carrying(self, role: str, value: str, rx: bool, required: bool = True) -> str:
        for m in self.binding.messages.values():
            if value in m.values() and (role in m.receivers if rx else m.sender == role):
                return m.name
        if required:
            raise ConfigError(f"no bound message carries {value!r} to the {role} node")
        return ""

    def _schedule(self) -> None:
        """Every cyclic frame at its DBC period (priority: its period), then the nodes'
        own tasks (priority 10 + period): at an instant where both are due, every frame
        goes out before any task computes, as from a controller's mailboxes, so a frame's
        timing does not depend on how long the firmware's task takes."""
        sch = self.scheduler
        b = self.binding
        pause_s = 0.0
        bal = self.cfg.firmware.balancing
        for bm in b.messages.values():
            if bm.sender not in self.nodes or bm.period_s is None:
                continue
            node = self.nodes[bm.sender]
            offset = 0.0
            if isinstance(node, PackNode) and "cell_voltage_v" in bm.values() and bm.array:
                # the units open the bleed switches, measure after the pause, then send
                pause_s = bal.measure_pause_fraction * bm.period_s
                if pause_s > 0:
                    sch.every(bm.period_s, self._pause_task(node), name="cmu pause", priority=10.1)
                offset = pause_s
            self._schedule_message(bm, offset)
        if "bms" in self.nodes:
            bms_node = self.nodes["bms"]
            assert isinstance(bms_node, BmsNode)
            period = self.cfg.firmware.measure_period_s
            sch.every(period, bms_node.tick, name="bms 10 ms task", priority=10 + period)
        if "vcu" in self.nodes:
            vcu = self.nodes["vcu"]
            assert isinstance(vcu, VcuNode)
            dt = self._vcu_period_s
            sch.every(dt, functools.partial(_step, vcu, dt), name="vcu task", priority=10 + dt)
        if "charger" in self.nodes:
            chg = self.nodes["charger"]
            assert isinstance(chg, ChargerNode)
            dt = self._charger_period_s
            sch.every(dt, functools.partial(_step, chg, dt), name="charger task", priority=10 + dt)

    def _pause_task(self, node: PackNode) -> Callable[[float], None]:
        return lambda t: node.prepare(t, "__cmu_pause__")

    def _schedule_message(self, bm: BoundMessage, offset_s: float) -> None:
        """Its sender's frames at the DBC period (the link calls the node's prepare)."""
        name = bm.name
        n_pages = len(bm.pages)
        if n_pages > 1 and bm.spread:
            senders = [self.link.sender(name, page, prepare=True) for page in range(n_pages)]
            state = {"page": 0}

            def send_page(t: float) -> None:  # the node's prepare, then the next page
                senders[state["page"]](t)
                state["page"] = (state["page"] + 1) % n_pages

            self.scheduler.every(bm.period_s / n_pages, send_page, name=name, offset_s=offset_s)  # type: ignore[operator]
        else:  # the node's prepare, then the frame (or frames)
            send = self.link.sender(name, prepare=True)
            self.scheduler.every(bm.period_s, send, name=name, offset_s=offset_s)  # type: ignore[arg-type]

    def dbc_bus_load(self) -> float:
        """Bus load the DBC's periods give for this pack (all nodes), worst-case bits."""
        return matrix_load(self.binding)[1] / self.bitrate

    def warm_up(self) -> None:
        """Compile (or load) every numba kernel and run each node's code path once, so no
        first-call compile stalls the bus later."""
        self.pack.warm_up()
        for _, batch in CRC8.values():
            batch(np.zeros((2, 8), dtype=np.uint8), skip=7)
        extremes_kernel(np.zeros(3), np.zeros(3))
        self.link.warm_up()
        if self.bms is not None:
            probe = EmulatedBms(
                self.cfg,
                load_chemistry(self.cfg.pack.chemistry),
                self.pack.sensors.temp_sensor_cells,
            )
            m = self.pack.sensors.measure()
            for k in range(12):
                probe.tick(k * self.cfg.firmware.measure_period_s, m)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        if self.started:
            return
        self.link.route()  # a node may have been swapped since the link was built
        self.warm_up()
        self._schedule()
        for node in self.nodes.values():
            node.start(self.scheduler.now_s)
        if not self.scheduler.realtime:
            self.scheduler.every(0.01, self._housekeeping, name="housekeeping", priority=math.inf)
        self._t0_wall = time.time()
        if self.scheduler.realtime:
            # everything built so far lives to the end: keep the collector from walking it
            # again and again (a full collection is a pause of milliseconds)
            gc.collect()
            gc.freeze()
        if self.scheduler.realtime:
            self.scheduler.idle = self._idle
        self._start_rx()
        self.started = True

    def _rx_loop(self, bus: can.BusABC, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                msg = bus.recv(0.05)
            except (can.CanError, OSError, ValueError) as exc:
                self._lost_exc = exc  # the main loop reconnects; this thread ends
                return
            if msg is not None:
                self._rxq.put(msg)

    # ------------------------------------------------------------------ link supervision

    def _start_rx(self) -> None:
        if self.bus is None or not self.scheduler.realtime:
            return
        self._stop_rx = threading.Event()
        self._rx_thread = threading.Thread(
            target=self._rx_loop, args=(self.bus, self._stop_rx), name="can-rx", daemon=True
        )
        self._rx_thread.start()

    def _on_send_error(self, exc: Exception) -> None:
        if self._lost_exc is None:
            self._lost_exc = exc

    def _supervise(self) -> None:
        """Notice a lost adapter (send or receive failed, bus-off), report it, retry opening
        it with backoff (0.5 s doubling to 10 s of wall time) and resume. The nodes run on
        meanwhile (the plant keeps its state); frames meant for the bus are counted."""
        exc = self._lost_exc
        if exc is not None and self.link.bus_ok:
            self.link.bus_ok = False
            self.link_losses += 1
            self._lost_since = time.monotonic()
            self._retry_at = self._lost_since + 0.5
            self._retry_s = 0.5
            _log.warning(
                "CAN link lost: %s; retrying", str(exc).splitlines()[0] if str(exc) else exc
            )
        if self.link.bus_ok or self._bus_spec is None:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._stop_rx.set()
        if self._rx_thread is not None:
            self._rx_thread.join(timeout=0.5)
            self._rx_thread = None
        if self.bus is not None:
            try:
                self.bus.shutdown()
            except (can.CanError, OSError, ValueError):
                pass
        try:
            self.bus = open_bus(self._bus_spec)
        except CanLinkError as err:
            self.bus = None
            self._retry_s = min(self._retry_s * 2.0, 10.0)
            self._retry_at = now + self._retry_s
            _log.warning("CAN link still down (%s); next try in %.1f s", err, self._retry_s)
            return
        down = now - self._lost_since
        self.link_down_s += down
        self.link.bus = self.bus
        self._lost_exc = None
        self.link.bus_ok = True
        self._start_rx()
        _log.warning("CAN link restored after %.1f s", down)

    def _idle(self, remaining_s: float) -> None:
        """Real time: wait for frames until the next deadline, handling each at once."""
        try:
            wait = remaining_s - self.spin_s
            msg = self._rxq.get(timeout=wait) if wait > 0 else self._rxq.get_nowait()
        except queue.Empty:
            return
        self._drain_rx(msg)

    def _drain_rx(self, first: can.Message | None = None) -> None:
        sch = self.scheduler
        if sch.realtime:
            # each frame at the time the interface stamped it (on the scheduler's time
            # axis), not when this loop got to it: frames that wait behind a task keep
            # their own times, no later than now and in order. A stamp more than 1 s off
            # is on another clock (some adapters count from their own start): now
            speed = sch.speed or 1.0
            pc = time.perf_counter()
            now_t = max((pc - sch._wall0) * speed, sch.now_s)
            epoch = time.time() - (pc - sch._wall0)
            msg = first
            while True:
                if msg is not None:
                    ts = msg.timestamp
                    t = (ts - epoch) * speed if ts else now_t
                    if not now_t - speed <= t <= now_t + 0.01:
                        t = now_t
                    t = min(max(t, self._rx_t_last), now_t)
                    self._rx_t_last = t
                    self.link.receive(t, msg)
                try:
                    msg = self._rxq.get_nowait()
                except queue.Empty:
                    return
        bus = self.bus
        if bus is None or not self.link.bus_ok:
            return
        if bus is not self._polled_bus:
            self._polled_bus, self._rx_pending = bus, rx_pending(bus)
        if not self._rx_pending():
            return
        while True:
            try:
                msg = bus.recv(0.0)
            except (can.CanError, OSError, ValueError) as exc:
                self._lost_exc = exc
                return
            if msg is None:
                return
            self.link.receive(sch.now_s, msg)

    def run(
        self,
        duration_s: float | None = None,
        status: Callable[[Emulator], None] | None = None,
        status_every_s: float = 1.0,
    ) -> RunSummary:
        """Run until the mission ends or ``duration_s`` (simulated) has passed. Ctrl-C
        stops cleanly: the summary and the log are complete up to that moment."""
        self.start()
        sch = self.scheduler
        end = duration_s if duration_s is not None else math.inf
        wall0 = time.perf_counter()
        next_status = wall0 + status_every_s
        summary = RunSummary(
            nodes=self.roles, bus=self._bus_spec.describe() if self._bus_spec else ""
        )
        # virtual time: frames from outside (a tester, a tool) are taken every 10 ms of
        # simulated time when a bus is attached; real time: as they arrive
        self._status_prev = (
            sch.now_s,
            self.link.stats.frames_tx + self.link.stats.frames_rx,
            time.perf_counter(),
        )
        try:
            while sch.now_s < end - 1e-9:
                if self.advance_to(min(end, sch.now_s + 1.0)):
                    summary.stopped_by = "mission complete"
                    break
                if status is not None and time.perf_counter() >= next_status:
                    status(self)
                    next_status += status_every_s
            else:
                summary.stopped_by = "duration reached"
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.stopped_by = "interrupted"
        summary.wall_s = time.perf_counter() - wall0
        summary.simulated_s = sch.now_s
        self._fill(summary)
        return summary

    def advance_to(self, end_s: float) -> bool:
        """Run every event up to ``end_s`` (simulated), taking frames from the bus every
        10 ms of simulated time in virtual time and as they arrive in real time, watching
        faults and the link on the way; True when the mission has ended. What
        :meth:`run` does, without its summary: for callers that step the emulator in
        small pieces (the HIL bench)."""
        self.start()
        sch = self.scheduler
        if not sch.realtime:
            # the 10 ms housekeeping is a task of the scheduler (_housekeeping); frames
            # sent before this call are taken now, before the events after it
            if self.bus is not None:
                self._drain_rx()
            if sch.now_s < end_s - 1e-9:
                sch.run_until(end_s)
            return self._mission_over()
        while sch.now_s < end_s - 1e-9:
            sch.run_until(min(end_s, sch.now_s + 0.05))
            self._watch_faults()
            self._supervise()
            if self._mission_over():
                return True
        return False

    def _housekeeping(self, t_s: float) -> None:
        """Virtual time, every 10 ms of simulated time after every other event of that
        instant: frames from the bus, faults, the link; the run stops when the mission
        has ended."""
        if self.bus is not None:
            self._drain_rx()
        self._watch_faults()
        self._supervise()
        if self._mission_over():
            self.scheduler.stop()

    def _mission_over(self) -> bool:
        return "vcu" in self.nodes and self.mission.done

    def _watch_faults(self) -> None:
        if self.bms is None:
            return
        for name in self.bms.protections.status.latched | self.bms.contactors.faults:
            if name not in self._fault_set:
                self._fault_set.add(name)
                self.faults_seen.append(f"{self.scheduler.now_s:.1f} s: {name}")

    def _fill(self, s: RunSummary) -> None:
        s.frames = self.link.stats.to_dict()
        s.bus_load = self.link.bus_load(self.bitrate, s.simulated_s)
        s.bus_load_dbc = self.dbc_bus_load()
        s.overruns = self.scheduler.stats.overruns
        s.skipped_periods = self.scheduler.stats.skipped_periods
        if "pack" in self.nodes:
            soc = self.pack.soc
            s.soc_true = {
                "min": float(soc.min()),
                "mean": float(soc.mean()),
                "max": float(soc.max()),
            }
        if self.bms is not None and self.bms.started:
            est = self.bms.soc.soc
            s.soc_estimated = {
                "min": float(np.min(est)),
                "mean": float(np.mean(est)),
                "max": float(np.max(est)),
            }
        s.faults_seen = list(self.faults_seen)
        s.link_losses = self.link_losses
        s.link_down_s = self.link_down_s + (
            time.monotonic() - self._lost_since if not self.link.bus_ok else 0.0
        )
        s.phases = list(self.mission.log)

    def status_line(self) -> str:
        """One line: simulated time, speed, SOC, pack V and A, cells, state, frames/s, errors."""
        sch = self.scheduler
        t = sch.now_s
        hh, rem = divmod(int(t), 3600)
        mm, ss = divmod(rem, 60)
        sent = self.link.stats.frames_tx + self.link.stats.frames_rx
        prev_t, prev_sent, prev_wall = self._status_prev
        now_wall = time.perf_counter()
        dw = now_wall - prev_wall
        speed = (t - prev_t) / dw if dw > 0 else 0.0
        fps = (sent - prev_sent) / dw if dw > 0 else 0.0
        self._status_prev = (t, sent, now_wall)
        parts = [f"{hh:02d}:{mm:02d}:{ss:02d}", f"x{speed:,.0f}"]
        if self.bms is not None and self.bms.started:
            bn = self.nodes["bms"]
            o = bn.outputs
            soc = o.get("soc_display_perc")
            if soc is not None:
                parts.append(f"SOC {soc:5.1f}%")
            parts.append(f"{o.get('pack_voltage_v', 0.0):6.1f} V {o.get('current_a', 0.0):+7.1f} A")
            if "min_cell_voltage_v" in o:
                parts.append(f"cell {o['min_cell_voltage_v']:.3f}-{o['max_cell_voltage_v']:.3f} V")
            parts.append(str(o.get("bms_state", "")))
        elif "pack" in self.nodes:
            parts.append(f"{self.pack.voltage_v:6.1f} V {self.pack.current_a:+7.1f} A")
        if not self.link.bus_ok:
            parts.append("CAN LINK DOWN")
        errs = sum(self.link.stats.errors.values())
        parts.append(f"{fps:,.0f} fr/s")
        if t > 0:
            parts.append(f"load {self.link.bus_load(self.bitrate, t):.0%}")
        parts.append(f"err {errs}")
        if sch.realtime:
            parts.append(f"overruns {sch.stats.overruns}")
        return "  ".join(parts)

    def close(self) -> None:
        """Store the BMS's persistent memory (when it has one), stop receiving, flush the
        log, shut the bus down (if opened here)."""
        if self.bms is not None and self.bms.started and self.bms.nvm is not None:
            if not self.bms.shutdown():
                _log.warning(
                    "the BMS's persistent memory could not be written: %s", self.bms.nvm.path
                )
            self.bms.started = False
        self._stop_rx.set()
        if self._rx_thread is not None:
            self._rx_thread.join(timeout=1.0)
            self._rx_thread = None
        link = getattr(self, "link", None)  # None: closed while being built
        if link is not None:
            link.flush_log()  # the errors the rate limit held back since their last line
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._own_bus and self.bus is not None:
            self.bus.shutdown()
            self.bus = None

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
