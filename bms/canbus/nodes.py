"""The emulator's nodes: pack, bms, vcu and charger, peers on one CAN bus.

Each node reads and writes named values only (``inputs``/``arrays`` filled by
the link from received frames, ``outputs`` read by the link when one of its
messages is due); none builds bytes. ``prepare(t, message)`` runs just before
one of the node's messages is encoded, so what goes out is sampled then.

- :class:`PackNode` is the plant with its cell monitoring units (CMU) and
  power distribution unit (PDU: contactors, shunt, voltage sensing). It is
  advanced exactly between events (the plant's steps are exact for a constant
  current), applies contactor and bleed commands when they arrive, and opens
  every contactor when the contactor command stops (5 of its DBC periods),
  stops bleeding when the balancing command stops (10 periods); see
  :data:`RX_TIMEOUT_PERIODS`. The physical load (the vehicle's
  inverter, the charger) reaches it through :meth:`PackNode.set_load`, not CAN.
- :class:`BmsNode` is the emulated firmware. It sees only decoded frames:
  cell data missing for ``cell_data_timeout_s`` (3.5 of its DBC periods)
  reads as NaN (an invalid reading, which the firmware's plausibility checks
  turn into a fault).
- :class:`VcuNode` plays a vehicle through a :class:`~bms.sim.mission.Mission`:
  mode and contactor requests, heartbeat, and a traction current that
  respects the BMS's limits.
- :class:`ChargerNode` is a CC-CV DC charger that follows the BMS's request.

Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from bms._jit import kernel
from bms.canbus.vocab import CHECK_SIGNALS
from bms.plant.sensors import Measurement

if TYPE_CHECKING:
    from bms.config import Config
    from bms.firmware.bms import EmulatedBms
    from bms.plant.pack import Pack
    from bms.sim.mission import Mission

__all__ = ["BmsNode", "ChargerNode", "Node", "PackNode", "VcuNode"]

_STATE_LABEL = {
    "STANDBY": "Standby",
    "PRECHARGE": "Precharge",
    "CLOSED_DRIVE": "ClosedDrive",
    "CLOSED_CHARGE": "ClosedCharge",
    "OPENING": "Opening",
    "FAULT": "Fault",
}
LEVEL_LABEL = ("Ok", "Warning", "Alarm", "Fault")

# How long a receiver waits for the next frame of a cyclic message, in DBC periods
# (GenMsgCycleTime) of that message, before what it carries counts as lost: reception
# deadline monitoring as AUTOSAR COM does it, a multiple of the cycle time, so that a user's
# matrix with other periods keeps working. A message without a period (sent on event) uses
# the role's time in seconds. The built-in matrix gives: current and voltages 10 ms -> 50 ms,
# cell voltages 100 ms -> 350 ms, temperatures 1 s -> 3.5 s, heartbeat 100 ms -> 300 ms,
# contactor command 20 ms -> 100 ms, balancing command 100 ms -> 1 s, charge request
# 100 ms -> 500 ms.
RX_TIMEOUT_PERIODS: dict[str, float] = {
    "current": 5.0,
    "voltages": 5.0,
    "cells": 3.5,
    "temps": 3.5,
    "heartbeat": 3.0,
    "contactor": 5.0,
    "bleed": 10.0,
    "charge_request": 5.0,
}
RX_TIMEOUT_EVENT_S: dict[str, float] = {
    "current": 0.05,
    "voltages": 0.05,
    "cells": 0.35,
    "temps": 3.5,
    "heartbeat": 0.3,
    "contactor": 0.1,
    "bleed": 1.0,
    "charge_request": 0.5,
}


def rx_timeout_s(role: str, period_s: float | None) -> float:
    """The receive timeout of the message that carries ``role``'s values, from its DBC
    period (None: a message without one)."""
    if period_s is None or not period_s > 0:
        return RX_TIMEOUT_EVENT_S[role]
    return RX_TIMEOUT_PERIODS[role] * period_s


@kernel
def extremes_kernel(x, out):  # pragma: no cover - numba
    """Index of the lowest and highest finite value of ``x`` (first of equals; -1, -1 when
    none is finite) and the number of finite values; ``out`` = lowest, highest, mean."""
    lo = -1
    hi = -1
    n = 0
    total = 0.0
    for i in range(x.size):
        v = x[i]
        if not math.isfinite(v):
            continue
        n += 1
        total += v
        if lo < 0 or v < x[lo]:
            lo = i
        if hi < 0 or v > x[hi]:
            hi = i
    if n:
        out[0] = x[lo]
        out[1] = x[hi]
        out[2] = total / n
    return lo, hi, n


@kernel
def fresh_copy_kernel(values, rx_time_s, oldest_s, out):  # pragma: no cover - numba
    """``out`` = ``values``, NaN where the value was received before ``oldest_s`` (stale);
    returns the number of stale values."""
    n_stale = 0
    for k in range(values.size):
        if rx_time_s[k] < oldest_s:
            out[k] = math.nan
            n_stale += 1
        else:
            out[k] = values[k]
    return n_stale


@kernel
def fresh_inputs_kernel(
    v, v_time, v_oldest_s, v_out, t, t_time, t_oldest_s, t_out
):  # pragma: no cover - numba
    """:func:`fresh_copy_kernel` of the cell voltages and of the temperatures in one call
    (the BMS's 10 ms task); returns the number of stale values of both."""
    return fresh_copy_kernel(v, v_time, v_oldest_s, v_out) + fresh_copy_kernel(
        t, t_time, t_oldest_s, t_out
    )


class Node:
    """A node's named values; subclasses fill ``outputs`` and react to ``inputs``."""

    name = "node"

    def __init__(self, sizes: dict[str, int]):
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.array_time: dict[str, np.ndarray] = {}
        self.rx_time: dict[str, float] = {}
        self.sizes = sizes
        self.kinds: dict[str, frozenset[str]] = {}  # message -> values it carries (emulator)
        # the values this node reads (None: all); the link delivers it only the messages
        # that carry one (see NodeIO.consumes)
        self.consumes: frozenset[str] | None = None

    def array(self, name: str, fill: float = math.nan) -> np.ndarray:
        """The input array ``name`` (created on first use, sized from the pack)."""
        arr = self.arrays.get(name)
        if arr is None:
            n = self.sizes.get(name, 0)
            arr = self.arrays[name] = np.full(n, fill)
            self.array_time[name] = np.full(n, -math.inf)
        return arr

    def start(self, t_s: float) -> None:
        """Called once before the bus goes live."""

    def prepare(self, t_s: float, message: str) -> None:
        """Called just before one of this node's messages is encoded."""

    def on_message(self, t_s: float, name: str) -> None:
        """Called after a valid frame of message ``name`` was decoded into inputs."""

    def fresh(self, message: str, t_s: float, timeout_s: float) -> bool:
        return t_s - self.rx_time.get(message, -math.inf) <= timeout_s + 1e-9


class PackNode(Node):
    """The plant, its cell monitoring units and its power distribution unit."""

    name = "pack"

    def __init__(
        self,
        pack: Pack,
        cfg: Config,
        contactor_msg: str,
        bleed_msg: str | None,
        contactor_timeout_s: float = RX_TIMEOUT_EVENT_S["contactor"],
        bleed_timeout_s: float = RX_TIMEOUT_EVENT_S["bleed"],
    ):
        sizes = {
            "cell_voltage_v": pack.n_series,
            "temp_c": pack.sensors.n_temp_sensors,
            "bleed": pack.n_series,
        }
        super().__init__(sizes)
        self.pack = pack
        self.sensors = pack.sensors
        self.t_s = 0.0
        self.demand_a = 0.0  # vehicle inverter, + = discharge
        self.charger_a = 0.0  # charger into the pack, >= 0
        self.contactor_msg = contactor_msg
        self.bleed_msg = bleed_msg
        # no contactor command for this long: every contactor opens; no balancing command:
        # the bleed switches open (rx_timeout_s of the messages' DBC periods)
        self.contactor_timeout_s = contactor_timeout_s
        self.bleed_timeout_s = bleed_timeout_s
        self.bleed_paused = False
        self.contactor_timeouts = 0
        self._flags: dict[str, tuple[bool, ...]] = {}
        self._bleed_cmd = self.array("bleed", 0.0)
        self._no_bleed = np.zeros(pack.n_series, dtype=bool)
        self._bleeding = False  # some switch may be closed
        self.outputs.update(
            cell_voltage_v=np.zeros(pack.n_series),
            temp_c=np.zeros(sizes["temp_c"]),
            current_a=0.0,
            pack_voltage_v=0.0,
            link_voltage_v=0.0,
            main_pos_feedback=False,
            main_neg_feedback=False,
            precharge_feedback=False,
        )

    # the physics between events
    def advance(self, t_s: float) -> None:
        dt = t_s - self.t_s
        if dt > 1e-12:
            self.pack.step(self.demand_a - self.charger_a, dt)
            self.t_s = t_s

    def set_load(self, t_s: float, demand_a: float | None = None, charger_a: float | None = None):
        """The vehicle's inverter and the charger change what they draw at ``t_s``."""
        self.advance(t_s)
        if demand_a is not None:
            self.demand_a = demand_a
        if charger_a is not None:
            self.charger_a = charger_a

    def start(self, t_s: float) -> None:
        self.t_s = t_s

    def prepare(self, t_s: float, message: str) -> None:
        self.advance(t_s)
        out = self.outputs
        s = self.sensors
        if message == "__cmu_pause__":
            self.bleed_paused = True
            self._apply_bleed(t_s)
            return
        if t_s - self.rx_time.get(self.contactor_msg, -math.inf) > self.contactor_timeout_s + 1e-9:
            cont = self.pack.contactors
            if cont.closed or cont.precharging or any(cont.commanded.values()):
                if self.rx_time:
                    self.contactor_timeouts += 1
                cont.command(main_pos=False, main_neg=False, precharge=False)
        flags = self._flags.get(message)
        if flags is None:
            kind = self.kinds.get(message, frozenset())
            flags = self._flags[message] = tuple(
                v in kind
                for v in (
                    "cell_voltage_v",
                    "temp_c",
                    "current_a",
                    "pack_voltage_v",
                    "link_voltage_v",
                    "main_pos_feedback",
                )
            )
        f_cells, f_temps, f_current, f_pack_v, f_link_v, f_feedback = flags
        if f_cells:
            out["cell_voltage_v"] = s.cell_voltages()
            self.bleed_paused = False
            self._apply_bleed(t_s)
        if f_temps:
            out["temp_c"] = s.temperatures()
        if f_current:
            out["current_a"] = s.current()
        if f_pack_v:
            out["pack_voltage_v"] = s.pack_voltage()
        if f_link_v:
            out["link_voltage_v"] = s.bus_voltage()
        if f_feedback:
            pos, neg, pre = self.pack.contactors.feedback
            out["main_pos_feedback"] = pos
            out["main_neg_feedback"] = neg
            out["precharge_feedback"] = pre

    def _apply_bleed(self, t_s: float) -> None:
        off = self.bleed_paused or (
            self.bleed_msg is not None and not self.fresh(self.bleed_msg, t_s, self.bleed_timeout_s)
        )
        if off:
            if self._bleeding:
                self.pack.set_bleed(self._no_bleed)
                self._bleeding = False
            return
        self.pack.set_bleed(self._bleed_cmd > 0.5)
        self._bleeding = True

    def on_message(self, t_s: float, name: str) -> None:
        if name == self.contactor_msg:
            inp = self.inputs
            cmd = {
                "main_pos": bool(inp.get("main_pos_command")),
                "main_neg": bool(inp.get("main_neg_command")),
                "precharge": bool(inp.get("precharge_command")),
            }
            if cmd != self.pack.contactors.commanded:
                self.advance(t_s)
                self.pack.contactors.command(**cmd)
        elif name == self.bleed_msg:
            self.advance(t_s)
            self._apply_bleed(t_s)


class BmsNode(Node):
    """The emulated BMS firmware behind its CAN interface."""

    name = "bms"

    def __init__(
        self,
        bms: EmulatedBms,
        cfg: Config,
        n_temp: int,
        messages: dict[str, str],
        cell_data_timeout_s: float = RX_TIMEOUT_EVENT_S["cells"],
        temp_data_timeout_s: float = RX_TIMEOUT_EVENT_S["temps"],
        current_timeout_s: float = RX_TIMEOUT_EVENT_S["current"],
        heartbeat_timeout_s: float = RX_TIMEOUT_EVENT_S["heartbeat"],
        voltages_timeout_s: float = RX_TIMEOUT_EVENT_S["voltages"],
    ):
        n_s = cfg.pack.series
        super().__init__({"cell_voltage_v": n_s, "temp_c": n_temp, "bleed": n_s})
        self.bms = bms
        self.cfg = cfg
        self.msg = messages  # role of a message -> its name in the binding
        self.cell_data_timeout_s = cell_data_timeout_s
        self.temp_data_timeout_s = temp_data_timeout_s
        self.current_timeout_s = current_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.voltages_timeout_s = voltages_timeout_s
        self.startup_timeout_s = 3.0
        self._groups: dict[str, tuple[bool, ...]] = {}
        self._stats = np.zeros(3)
        self._cap_stats = np.zeros(3)
        self._v = self.array("cell_voltage_v")
        self._t = self.array("temp_c")
        self._vt = self.array_time["cell_voltage_v"]
        self._tt = self.array_time["temp_c"]
        self._v_in = np.full(n_s, math.nan)
        self._t_in = np.full(n_temp, math.nan)
        self._m = Measurement(
            time_s=0.0,
            cell_voltage_v=self._v_in,
            temp_c=self._t_in,
            current_a=math.nan,
            pack_voltage_v=math.nan,
            bus_voltage_v=math.nan,
            contactor_feedback={"main_pos": False, "main_neg": False, "precharge": False},
        )
        self._reset_was = False
        self.cell_data_timeouts = 0
        self.last_outputs: Any = None
        lim = cfg.firmware.limits
        self.charge_voltage_v = n_s * lim.charge_taper_v[0]
        self.outputs.update({v: "Ok" for v in CHECK_SIGNALS.values()})
        self.outputs.update(
            bms_state="Standby",
            cell_voltage_v=self._v_in,
            bleed=np.zeros(n_s),
            current_a=0.0,
            pack_voltage_v=0.0,
            link_voltage_v=0.0,
            pack_power_kw=0.0,
        )

    def measurement(self, t_s: float) -> tuple[Measurement, bool]:
        """What the firmware sees now, from the frames received; stale data reads NaN.

        The Measurement, its arrays and its feedback dict are this node's and are
        refilled by the next call (no allocation per tick): read them before that."""
        vt, tt = self._vt, self._tt
        n_stale = fresh_inputs_kernel(
            self._v,
            vt,
            t_s - self.cell_data_timeout_s,
            self._v_in,
            self._t,
            tt,
            t_s - self.temp_data_timeout_s,
            self._t_in,
        )
        # nothing received at all (an empty array) counts as stale too
        any_stale = n_stale > 0 or not (vt.size and tt.size)
        inp = self.inputs
        rx = self.rx_time
        msg = self.msg
        cur = msg.get("current")
        i = inp.get("current_a", math.nan)
        # Node.fresh's rule, inline (every 10 ms)
        if cur is not None and t_s - rx.get(cur, -math.inf) > self.current_timeout_s + 1e-9:
            i = math.nan
        volt_msg = msg.get("voltages")
        fresh_v = (
            volt_msg is None or t_s - rx.get(volt_msg, -math.inf) <= self.voltages_timeout_s + 1e-9
        )
        m = self._m
        m.time_s = t_s
        m.current_a = i
        m.pack_voltage_v = inp.get("pack_voltage_v", math.nan) if fresh_v else math.nan
        m.bus_voltage_v = inp.get("link_voltage_v", math.nan) if fresh_v else math.nan
        fb = m.contactor_feedback
        fb["main_pos"] = bool(inp.get("main_pos_feedback", False))
        fb["main_neg"] = bool(inp.get("main_neg_feedback", False))
        fb["precharge"] = bool(inp.get("precharge_feedback", False))
        return m, any_stale

    def start(self, t_s: float) -> None:
        # load (or compile) the kernel of the receive path before the bus goes live
        self.measurement(t_s)

    def on_message(self, t_s: float, name: str) -> None:
        if name == self.msg.get("command"):
            inp = self.inputs
            hb = self.msg.get("heartbeat")
            if hb is not None and not self.fresh(hb, t_s, self.heartbeat_timeout_s):
                return  # a command without a live vehicle controller is not trusted
            mode = inp.get("mode_request")
            if mode is None or inp.get("contactor_request") is None:
                return  # a value outside its table: the frame is discarded, not obeyed
            close = inp.get("contactor_request") == "Close"
            request = "standby"
            if close and mode == "Drive":
                request = "drive"
            elif close and mode == "Charge":
                request = "charge"
            self.bms.vehicle_command(t_s, request)
            reset = bool(inp.get("fault_reset"))
            if reset and not self._reset_was:
                self.bms.reset()
            self._reset_was = reset

    def tick(self, t_s: float) -> None:
        """The firmware's 10 ms task, on what the bus delivered. Until every cell voltage
        and temperature has arrived once, the firmware waits (contactors open): a BMS
        does not start its SOC from readings it does not have."""
        if not self.bms.started:
            if not (
                np.all(self.array_time["cell_voltage_v"] > -math.inf)
                and np.all(self.array_time["temp_c"] > -math.inf)
            ):
                if t_s > self.startup_timeout_s:
                    self.outputs["level_cell_data_timeout"] = "Fault"
                    self.outputs["bms_state"] = "Fault"
                return
        m, stale = self.measurement(t_s)
        if stale:
            self.cell_data_timeouts += 1
        out = self.bms.tick(t_s, m)
        self.last_outputs = out
        o = self.outputs
        cmds = out.contactors
        o["main_pos_command"] = cmds["main_pos"]
        o["main_neg_command"] = cmds["main_neg"]
        o["precharge_command"] = cmds["precharge"]
        o["bms_state"] = _STATE_LABEL.get(out.state, "Fault")
        o["level_cell_data_timeout"] = "Fault" if stale else "Ok"
        o["current_a"] = m.current_a
        o["pack_voltage_v"] = m.pack_voltage_v
        o["link_voltage_v"] = m.bus_voltage_v
        o["pack_power_kw"] = m.current_a * m.pack_voltage_v / 1000.0

    def prepare(self, t_s: float, message: str) -> None:
        """Fill the reports a message carries just before it goes out."""
        out = self.last_outputs
        if out is None:
            return
        groups = self._groups.get(message)
        if groups is None:
            vals = self.kinds.get(message, frozenset())
            groups = self._groups[message] = tuple(
                bool(vals & g)
                for g in (
                    _STATE_VALUES,
                    _LIMIT_VALUES,
                    _SOC_VALUES,
                    _CELL_VALUES,
                    _BLEED_VALUES,
                    _TEMP_VALUES,
                )
            )
        g_state, g_limit, g_soc, g_cell, g_bleed, g_temp = groups
        o = self.outputs
        bms = self.bms
        if g_state:
            inp = self.inputs  # the auxiliary contacts, as the PDU reports them
            o["main_pos_state"] = "Closed" if inp.get("main_pos_feedback") else "Open"
            o["main_neg_state"] = "Closed" if inp.get("main_neg_feedback") else "Open"
            o["precharge_state"] = "Closed" if inp.get("precharge_feedback") else "Open"
            levels = out.protection.levels
            worst = max(levels.values(), default=0)
            o["protection_level"] = LEVEL_LABEL[worst]
            o["fault_latched"] = bool(out.protection.latched)
            for check, value in CHECK_SIGNALS.items():
                if check in levels:
                    o[value] = LEVEL_LABEL[levels[check]]
            text = " ".join(sorted(bms.contactors.faults)).lower()
            o["contactor_fault"] = (
                "PrechargeFailed"
                if "precharge" in text
                else "Welded"
                if "weld" in text
                else "FeedbackLost"
                if "lost" in text
                else "None"
            )
        if g_limit:
            lim = out.limits
            o["charge_current_limit_a"] = lim.charge_a
            o["discharge_current_limit_a"] = lim.discharge_a
            o["charge_voltage_limit_v"] = self.charge_voltage_v
            charging = out.state == "CLOSED_CHARGE"
            o["charge_enable"] = charging and lim.charge_a > 0.0
            o["charge_voltage_request_v"] = self.charge_voltage_v
            o["charge_current_request_a"] = lim.charge_a if charging else 0.0
        if g_soc:
            soc = out.soc
            if soc is not None:
                o["soc_display_perc"] = 100.0 * soc.display
                o["soc_min_perc"] = 100.0 * soc.min
                o["soc_max_perc"] = 100.0 * soc.max
                o["soc_mean_perc"] = 100.0 * soc.mean
                o["soe_kwh"] = soc.soe_wh / 1000.0
            nominal = bms.model.capacity_as / 3600.0
            extremes_kernel(bms.soh.capacity_ah, self._cap_stats)  # the weakest group's
            cap = float(self._cap_stats[0])
            o["soh_perc"] = min(100.0, 100.0 * cap / nominal) if nominal > 0 else 0.0
        if g_cell:
            lo, hi, _ = extremes_kernel(self._v_in, self._stats)
            if lo >= 0:
                v_lo, v_hi = self._stats[0], self._stats[1]
                o["max_cell_voltage_v"] = v_hi
                o["min_cell_voltage_v"] = v_lo
                o["max_cell_group"] = hi + 1
                o["min_cell_group"] = lo + 1
                o["cell_voltage_spread_v"] = v_hi - v_lo
        if g_bleed:
            bleed = bms.bleed_request
            o["bleed"] = bleed
            n_bleeding = int(np.count_nonzero(bleed))
            o["balancing_active"] = n_bleeding > 0
            o["bleeding_groups"] = n_bleeding
        if g_temp:
            lo, hi, _ = extremes_kernel(self._t_in, self._stats)
            if lo >= 0:
                o["max_temp_c"] = self._stats[1]
                o["min_temp_c"] = self._stats[0]
                o["max_temp_sensor"] = hi + 1
                o["min_temp_sensor"] = lo + 1
                o["mean_temp_c"] = self._stats[2]


_STATE_VALUES = frozenset(
    {
        "main_pos_state",
        "main_neg_state",
        "precharge_state",
        "protection_level",
        "fault_latched",
        "contactor_fault",
        *CHECK_SIGNALS.values(),
    }
)
_LIMIT_VALUES = frozenset(
    {
        "charge_current_limit_a",
        "discharge_current_limit_a",
        "charge_voltage_limit_v",
        "charge_enable",
        "charge_voltage_request_v",
        "charge_current_request_a",
    }
)
_SOC_VALUES = frozenset(
    {"soc_display_perc", "soc_min_perc", "soc_max_perc", "soc_mean_perc", "soh_perc", "soe_kwh"}
)
_CELL_VALUES = frozenset(
    {
        "max_cell_voltage_v",
        "min_cell_voltage_v",
        "max_cell_group",
        "min_cell_group",
        "cell_voltage_spread_v",
    }
)
_BLEED_VALUES = frozenset({"bleed", "balancing_active", "bleeding_groups"})
_TEMP_VALUES = frozenset(
    {"max_temp_c", "min_temp_c", "max_temp_sensor", "min_temp_sensor", "mean_temp_c"}
)


class VcuNode(Node):
    """A vehicle controller that follows a mission and respects the BMS's limits."""

    name = "vcu"

    def __init__(self, mission: Mission, pack: PackNode | None, one_c_a: float):
        super().__init__({})
        self.mission = mission
        self.pack = pack
        self.one_c_a = one_c_a
        self.outputs.update(
            mode_request="Standby", contactor_request="Open", fault_reset=False, vcu_state="Ready"
        )
        self.demand_a = 0.0
        self.limited_s = 0.0  # time the demand was cut to the BMS's limit
        # what it reads, here and in the mission (a charge phase ends on a low current):
        # the BMS's other reports (cell voltages, statistics) are not delivered to it
        self.consumes = frozenset(
            {
                "bms_state",
                "charge_current_limit_a",
                "discharge_current_limit_a",
                "charger_current_a",
            }
        )

    def within_limits(self, want_a: float) -> float:
        """``want_a`` cut to the charge and discharge limits the BMS last sent (a limit
        not received, or not a number, counts as 0 A)."""
        inp = self.inputs
        dis = inp.get("discharge_current_limit_a", 0.0)
        chg = inp.get("charge_current_limit_a", 0.0)
        dis = dis if dis == dis else 0.0
        chg = chg if chg == chg else 0.0
        return min(max(want_a, -chg), dis)

    def step(self, t_s: float, dt_s: float) -> None:
        """The VCU's own task: follow the mission, set the traction current."""
        inp = self.inputs
        self.mission.update(t_s, self)
        want = self.mission.current_a(t_s)
        state = inp.get("bms_state")
        i = 0.0
        if state == "ClosedDrive":
            i = self.within_limits(want)
            if i != want:
                self.limited_s += dt_s
        if i != self.demand_a:
            self.demand_a = i
            if self.pack is not None:
                self.pack.set_load(t_s, demand_a=i)


class ChargerNode(Node):
    """A DC charger: constant current up to the requested voltage, then constant voltage."""

    name = "charger"

    def __init__(
        self,
        pack: PackNode | None,
        request_msg: str,
        request_timeout_s: float = RX_TIMEOUT_EVENT_S["charge_request"],
        max_current_a: float = 500.0,
        max_power_w: float = 300e3,
        gain_a_per_v: float = 20.0,
        ramp_a_per_s: float = 100.0,
    ):
        super().__init__({})
        self.pack = pack
        self.request_msg = request_msg
        self.request_timeout_s = request_timeout_s  # no request for this long: stop
        self.max_current_a = max_current_a
        self.max_power_w = max_power_w
        self.gain_a_per_v = gain_a_per_v
        self.ramp_a_per_s = ramp_a_per_s
        self.current_a = 0.0
        self.outputs.update(
            charger_voltage_v=0.0,
            charger_current_a=0.0,
            charger_state="Off",
            charger_hardware_fault=False,
            charger_overtemp=False,
            charger_input_fault=False,
            charger_comm_timeout=False,
        )

    def step(self, t_s: float, dt_s: float) -> None:
        inp = self.inputs
        fresh = self.fresh(self.request_msg, t_s, self.request_timeout_s)
        enabled = fresh and bool(inp.get("charge_enable"))
        v_out = 0.0
        if self.pack is not None:
            self.pack.advance(t_s)
            v_out = self.pack.pack.contactors.bus_voltage_v
        state = "Off"
        i = 0.0
        if enabled and v_out > 50.0:
            v_req = float(inp.get("charge_voltage_request_v", 0.0))
            i_req = float(inp.get("charge_current_request_a", 0.0))
            i_max = max(0.0, min(i_req, self.max_current_a, self.max_power_w / max(v_out, 1.0)))
            i_cv = self.current_a + self.gain_a_per_v * (v_req - v_out) * dt_s * 5.0
            ramp = self.current_a + self.ramp_a_per_s * dt_s
            i = max(0.0, min(i_max, i_cv, ramp))
            state = (
                "ConstantVoltage"
                if i < i_max - 1e-6 and v_out >= v_req - 1.0
                else "ConstantCurrent"
            )
        self.current_a = i
        o = self.outputs
        o["charger_voltage_v"] = v_out
        o["charger_current_a"] = i
        o["charger_state"] = state
        o["charger_comm_timeout"] = not fresh and self.rx_time.get(self.request_msg) is not None
        if self.pack is not None and i != self.pack.charger_a:
            self.pack.set_load(t_s, charger_a=i)
