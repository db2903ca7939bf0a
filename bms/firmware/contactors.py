"""Contactor and precharge control of the emulated BMS (the 10 ms task).

The controller sees only a :class:`~bms.plant.sensors.Measurement` (pack and
bus voltage, current, contactor feedback) and returns the contactor commands
to send; it never touches the plant. All timing uses the ``t_s`` passed to
:meth:`ContactorControl.update` (virtual or real time), never the wall clock.
Positive current = discharge.

States and transitions::

    STANDBY --drive|charge--> PRECHARGE --bus >= ratio*pack, main_pos, overlap--> CLOSED_*
    PRECHARGE --timeout|stall--> (all open, retry_delay_s) --> PRECHARGE ... --> FAULT
    CLOSED_DRIVE <--request--> CLOSED_CHARGE            (no re-opening needed)
    CLOSED_* --standby--> OPENING --|I| <= open_current_a or open_wait_s-->
             open main_pos --feedback--> open main_neg --feedback--> STANDBY
    CLOSED_*, PRECHARGE, OPENING --fault_open or feedback fault--> OPENING (fault
             pending, fault_open_delay_s, mains stay closed) --> all open --> FAULT
    FAULT --request standby, fault_open False, no feedback closed, reset()--> STANDBY

- Precharge: main_neg and precharge close; when the bus voltage reaches
  ``precharge_ratio`` of the pack voltage, main_pos closes, and after
  ``overlap_s`` (with main_pos reported closed) the precharge contactor
  opens. An attempt fails when the ratio is not reached within
  ``precharge_timeout_s``, or early (``precharge_stall_s`` > 0) when the bus
  is still below ``precharge_stall_ratio`` of the pack by then: the link is
  not charging (a short, an open resistor) and the resistor would carry
  V/R the whole timeout. After a failed attempt everything opens for
  ``retry_delay_s``; after ``precharge_retries`` more failures: FAULT
  ``"precharge failed"``. A standby request aborts a precharge at once, except
  during the overlap (main_pos already closed): the closing finishes, then
  the normal opening follows.
- Fault opening: ``fault_open`` (or a feedback fault of this module) while
  the mains are closed opens everything at once after
  ``fault_open_delay_s`` regardless of the current (counted in
  ``openings_under_load`` above ``open_current_a``). The opening is committed
  once started: ``fault_open`` going False during the delay does not cancel
  it. Before main_pos is closed (precharging) no vehicle current can flow,
  so it opens at once. In STANDBY, ``fault_open`` only keeps the contactors
  open (nothing to open, no FAULT).
- FAULT is latched. It is left for STANDBY only at an update where
  ``request == "standby"``, ``fault_open`` is False, no contactor reports
  closed, and :meth:`ContactorControl.reset` was called since the previous
  update. A reset() that finds these conditions unmet is discarded (it is
  not remembered until they hold). ``faults`` is cleared on reset.
- Feedback: each contactor's feedback must follow its command within
  ``feedback_timeout_s``: reported closed while commanded open is
  ``"<name> welded"``, reported open while commanded closed is
  ``"<name> feedback lost"``. A missing feedback entry reads as open.
- Bus-voltage weld check: after mains that were closed are both commanded
  open, the bus voltage must fall below ``weld_voltage_ratio`` of the pack
  voltage within ``weld_check_s``, else ``"mains welded (bus voltage)"``;
  this catches two welded mains whose feedback is broken. It needs the DC
  link to discharge (the plant's passive 10 kohm x 1 mF, tau 10 s, gets
  below 0.5 after ~7 s, hence the 10 s default). A closing request waits
  until the check has passed: closing onto a charged link would hide a weld.
- An unknown request counts as "standby" (``unknown_requests``; logged once).
"""

from __future__ import annotations

import enum
import logging
import typing

from bms.config import ContactorControlConfig
from bms.plant.sensors import Measurement

__all__ = ["REQUESTS", "ContactorControl", "ContactorControlConfig", "ContactorState"]

_log = logging.getLogger(__name__)

REQUESTS = ("standby", "drive", "charge")
_NAMES = ("main_pos", "main_neg", "precharge")
_EPS_S = 1e-9  # timer tolerance: accumulated virtual time is not exact (0.01 * 50 != 0.5)

WELD_BUS_FAULT = "mains welded (bus voltage)"
PRECHARGE_FAULT = "precharge failed"
FAULT_OPEN = "fault open"


class ContactorState(enum.Enum):
    STANDBY = "standby"
    PRECHARGE = "precharge"
    CLOSED_DRIVE = "closed_drive"
    CLOSED_CHARGE = "closed_charge"
    OPENING = "opening"
    FAULT = "fault"


_CLOSED = {"drive": ContactorState.CLOSED_DRIVE, "charge": ContactorState.CLOSED_CHARGE}
_Phase = typing.Literal["", "charge", "overlap", "retry_wait", "wait_current", "pos", "neg"]


class ContactorControl:
    """The contactor state machine. Call :meth:`update` every task period."""

    def __init__(self, cfg: ContactorControlConfig | None = None):
        self.cfg = cfg if cfg is not None else ContactorControlConfig()
        self.state = ContactorState.STANDBY
        self.state_since_s: float | None = None  # set at the first update
        self.faults: set[str] = set()
        # counters (never reset)
        self.closings = 0  # main_pos commanded closed after a good precharge
        self.openings_under_load = 0  # mains opened with |I| > open_current_a
        self.precharge_attempts = 0
        self.unknown_requests = 0
        self._cmd = dict.fromkeys(_NAMES, False)
        self._mismatch_since: dict[str, float | None] = dict.fromkeys(_NAMES)
        self._phase: _Phase = ""
        self._phase_since = 0.0
        self._attempt = 0  # attempts of the current closing sequence
        self._target = "drive"
        self._fault_since: float | None = None  # a fault opening is pending
        self._mains_closed_since_open = False
        self._weld_check_since: float | None = None
        self._reset_requested = False
        self._t = 0.0

    # ------------------------------------------------------------------ public

    @property
    def commands(self) -> dict[str, bool]:
        """The commands of the last update."""
        return dict(self._cmd)

    @property
    def time_in_state_s(self) -> float:
        """Time spent in the current state, as of the last update."""
        return 0.0 if self.state_since_s is None else self._t - self.state_since_s

    @property
    def weld_check_pending(self) -> bool:
        return self._weld_check_since is not None

    def reset(self) -> None:
        """Ask to leave FAULT at the next update (see the module docstring for the rule)."""
        self._reset_requested = True

    def update(self, t_s: float, m: Measurement, request: str, fault_open: bool) -> dict[str, bool]:
        """Advance the state machine to time ``t_s``; return the commands to send."""
        if self._steady(t_s, m, request, fault_open):
            return dict(self._cmd)
        if self.state_since_s is None:
            self.state_since_s = t_s
        self._t = t_s
        if request not in REQUESTS:
            self.unknown_requests += 1
            if self.unknown_requests == 1:
                _log.warning("contactor request %r unknown; treated as 'standby'", request)
            request = "standby"
        # a reset() counts only for a fault that was latched before this update
        reset = self._reset_requested and self.state is ContactorState.FAULT
        self._reset_requested = False

        got = m.contactor_feedback
        fb = {
            "main_pos": bool(got.get("main_pos", False)),
            "main_neg": bool(got.get("main_neg", False)),
            "precharge": bool(got.get("precharge", False)),
        }
        self._supervise_feedback(t_s, m, fb)
        self._check_weld_by_bus(t_s, m)

        st = self.state
        if st is ContactorState.FAULT:
            self._in_fault(t_s, request, fault_open, fb, reset)
        elif st is ContactorState.STANDBY:
            self._in_standby(t_s, request, fault_open)
        elif fault_open and self._fault_since is None:
            self._trip(t_s, m, FAULT_OPEN)
        elif st is ContactorState.PRECHARGE:
            self._in_precharge(t_s, m, request, fb)
        elif st is ContactorState.OPENING:
            self._in_opening(t_s, m, request, fb)
        elif request == "standby":  # CLOSED_*
            self._enter(t_s, ContactorState.OPENING, "wait_current")
            self._in_opening(t_s, m, request, fb)
        else:
            self._enter(t_s, _CLOSED[request])

        if not (self._cmd["main_pos"] or self._cmd["main_neg"]) and self._mains_closed_since_open:
            self._mains_closed_since_open = False
            self._weld_check_since = t_s
        return dict(self._cmd)

    def _steady(self, t_s: float, m: Measurement, request: str, fault_open: bool) -> bool:
        """The usual 10 ms of a drive or a charge: closed as the vehicle asks, no fault,
        no reset, no weld check pending, every contactor following its command. Does what
        the full update does then (the supervision's timers cleared, the state entered
        again) and returns True; False, having changed nothing, in any other case."""
        cmd = self._cmd
        got = m.contactor_feedback
        if not (
            self.state is _CLOSED.get(request)
            and cmd["main_pos"]
            and not fault_open
            and not self._reset_requested
            and self._weld_check_since is None
            and bool(got.get("main_pos", False)) == cmd["main_pos"]
            and bool(got.get("main_neg", False)) == cmd["main_neg"]
            and bool(got.get("precharge", False)) == cmd["precharge"]
        ):
            return False
        self._t = t_s
        ms = self._mismatch_since
        ms["main_pos"] = ms["main_neg"] = ms["precharge"] = None
        self._fault_since = None
        self._set_phase(t_s, "")
        return True

    # ------------------------------------------------------------------ states

    def _in_standby(self, t_s: float, request: str, fault_open: bool) -> None:
        self._command(t_s, main_pos=False, main_neg=False, precharge=False)
        if request != "standby" and not fault_open and self._weld_check_since is None:
            self._target = request
            self._attempt = 0
            self._enter(t_s, ContactorState.PRECHARGE)
            self._start_attempt(t_s)

    def _start_attempt(self, t_s: float) -> None:
        self._attempt += 1
        self.precharge_attempts += 1
        self._set_phase(t_s, "charge")
        self._command(t_s, main_pos=False, main_neg=True, precharge=True)

    def _in_precharge(self, t_s: float, m: Measurement, request: str, fb: dict[str, bool]) -> None:
        cfg = self.cfg
        if request == "standby" and self._phase != "overlap":  # overlap: finish closing first
            if self._phase == "retry_wait":
                self._enter(t_s, ContactorState.STANDBY)
            else:
                self._command(t_s, main_pos=False, main_neg=False, precharge=False)
                self._enter(t_s, ContactorState.OPENING, "neg")
            return
        if request != "standby":
            self._target = request
        elapsed = t_s - self._phase_since
        if self._phase == "charge":
            v_pack, v_bus = m.pack_voltage_v, m.bus_voltage_v
            if v_pack > 0.0 and v_bus >= cfg.precharge_ratio * v_pack:
                self._command(t_s, main_pos=True)
                self.closings += 1
                self._mains_closed_since_open = True
                self._set_phase(t_s, "overlap")
            elif _due(elapsed, cfg.precharge_timeout_s):
                self._attempt_failed(t_s, "timeout", v_bus, v_pack)
            elif (
                cfg.precharge_stall_s > 0.0
                and _due(elapsed, cfg.precharge_stall_s)
                and not v_bus >= cfg.precharge_stall_ratio * v_pack
            ):
                self._attempt_failed(t_s, "bus voltage not rising", v_bus, v_pack)
        elif self._phase == "overlap":
            if _due(elapsed, cfg.overlap_s) and fb["main_pos"]:
                self._command(t_s, precharge=False)
                self._enter(t_s, _CLOSED[self._target])
        elif self._phase == "retry_wait" and _due(elapsed, cfg.retry_delay_s):
            self._start_attempt(t_s)

    def _attempt_failed(self, t_s: float, why: str, v_bus: float, v_pack: float) -> None:
        self._command(t_s, main_pos=False, main_neg=False, precharge=False)
        _log.warning(
            "precharge attempt %d failed (%s): bus %.1f V, pack %.1f V",
            self._attempt,
            why,
            v_bus,
            v_pack,
        )
        if self._attempt > self.cfg.precharge_retries:
            self._fault(t_s, PRECHARGE_FAULT)
        else:
            self._set_phase(t_s, "retry_wait")

    def _in_opening(self, t_s: float, m: Measurement, request: str, fb: dict[str, bool]) -> None:
        cfg = self.cfg
        if self._fault_since is not None:
            if _due(t_s - self._fault_since, cfg.fault_open_delay_s):
                self._open_all_now(t_s, m)
                self._enter(t_s, ContactorState.FAULT)
            return
        if self._phase == "wait_current":
            if request != "standby":  # nothing opened yet: back to closed
                self._enter(t_s, _CLOSED[request])
            elif abs(m.current_a) <= cfg.open_current_a or _due(
                t_s - self._phase_since, cfg.open_wait_s
            ):
                self._count_load(m)
                self._command(t_s, main_pos=False, precharge=False)
                self._set_phase(t_s, "pos")
        elif self._phase == "pos":
            if not fb["main_pos"]:
                self._command(t_s, main_neg=False, precharge=False)
                self._set_phase(t_s, "neg")
        elif self._phase == "neg" and not any(fb.values()):
            self._enter(t_s, ContactorState.STANDBY)
        # a contactor that does not follow is caught by the feedback supervision

    def _in_fault(
        self, t_s: float, request: str, fault_open: bool, fb: dict[str, bool], reset: bool
    ) -> None:
        self._command(t_s, main_pos=False, main_neg=False, precharge=False)
        if not reset:
            return
        if request == "standby" and not fault_open and not any(fb.values()):
            _log.info("contactor fault reset (was: %s)", ", ".join(sorted(self.faults)))
            self.faults.clear()
            self._enter(t_s, ContactorState.STANDBY)
        else:
            _log.info(
                "contactor fault reset refused: request %r, fault_open %s, feedback closed: %s",
                request,
                fault_open,
                [k for k, v in fb.items() if v],
            )

    # ------------------------------------------------------------------ faults

    def _trip(self, t_s: float, m: Measurement, reason: str) -> None:
        """A fault: open now, or after fault_open_delay_s when vehicle current can flow."""
        self.faults.add(reason)
        if self.state is ContactorState.FAULT or self._fault_since is not None:
            return
        _log.warning("contactor fault: %s (state %s)", reason, self.state.value)
        mains_closed = self._cmd["main_pos"] and self._cmd["main_neg"]
        if mains_closed and self.cfg.fault_open_delay_s > 0.0:
            self._fault_since = t_s
            self._enter(t_s, ContactorState.OPENING)
        else:
            self._open_all_now(t_s, m)
            self._enter(t_s, ContactorState.FAULT)

    def _fault(self, t_s: float, reason: str) -> None:
        self.faults.add(reason)
        _log.warning("contactor fault: %s", reason)
        self._command(t_s, main_pos=False, main_neg=False, precharge=False)
        self._enter(t_s, ContactorState.FAULT)

    def _open_all_now(self, t_s: float, m: Measurement) -> None:
        if self._cmd["main_pos"] and self._cmd["main_neg"]:
            self._count_load(m)
        self._command(t_s, main_pos=False, main_neg=False, precharge=False)

    def _count_load(self, m: Measurement) -> None:
        if abs(m.current_a) > self.cfg.open_current_a:
            self.openings_under_load += 1
            _log.warning("contactors opened under load: %.1f A", m.current_a)

    def _supervise_feedback(self, t_s: float, m: Measurement, fb: dict[str, bool]) -> None:
        if fb == self._cmd:  # the usual case: every contactor follows its command
            ms = self._mismatch_since
            ms["main_pos"] = ms["main_neg"] = ms["precharge"] = None
            return
        for k in _NAMES:
            if fb[k] == self._cmd[k]:
                self._mismatch_since[k] = None
                continue
            since = self._mismatch_since[k]
            if since is None:
                self._mismatch_since[k] = since = t_s
            if _due(t_s - since, self.cfg.feedback_timeout_s):
                reason = f"{k} welded" if fb[k] else f"{k} feedback lost"
                if reason not in self.faults:
                    self._trip(t_s, m, reason)

    def _check_weld_by_bus(self, t_s: float, m: Measurement) -> None:
        since = self._weld_check_since
        if since is None:
            return
        if m.bus_voltage_v < self.cfg.weld_voltage_ratio * m.pack_voltage_v:
            self._weld_check_since = None  # the link discharged: the mains are open
        elif _due(t_s - since, self.cfg.weld_check_s):
            self._weld_check_since = None
            if self.state is ContactorState.FAULT:
                self.faults.add(WELD_BUS_FAULT)
                _log.warning("contactor fault: %s", WELD_BUS_FAULT)
            else:
                self._trip(t_s, m, WELD_BUS_FAULT)

    # ------------------------------------------------------------------ helpers

    def _command(self, t_s: float, **states: bool) -> None:
        for k, v in states.items():
            if self._cmd[k] != v:
                self._cmd[k] = v
                self._mismatch_since[k] = t_s  # the feedback has feedback_timeout_s to follow

    def _enter(self, t_s: float, state: ContactorState, phase: _Phase = "") -> None:
        if state is not self.state:
            _log.debug("contactors: %s -> %s", self.state.value, state.value)
            self.state = state
            self.state_since_s = t_s
        if state is not ContactorState.OPENING:
            self._fault_since = None
        self._set_phase(t_s, phase)

    def _set_phase(self, t_s: float, phase: _Phase) -> None:
        self._phase = phase
        self._phase_since = t_s


def _due(elapsed_s: float, duration_s: float) -> bool:
    return elapsed_s >= duration_s - _EPS_S
