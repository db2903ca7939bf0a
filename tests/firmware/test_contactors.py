"""Contactor and precharge control in closed loop with the plant: the firmware sees only
``pack.sensors.measure()`` every 10 ms, its commands go to ``pack.contactors``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import NO_SPREAD, make_pack

from bms import ConfigError, Pack
from bms.config import Config, ContactorConfig, PackConfig
from bms.firmware.contactors import (
    FAULT_OPEN,
    PRECHARGE_FAULT,
    WELD_BUS_FAULT,
    ContactorControl,
    ContactorControlConfig,
    ContactorState,
)
from bms.plant.sensors import Measurement

DT = 0.01  # the firmware task period, s
EPS = 1e-6
S = ContactorState


def plant(contactors: ContactorConfig | None = None) -> Pack:
    """100 LFP cells in series (about 330 V), contactors open."""
    if contactors is None:
        return make_pack(series=100, closed=False)
    cfg = Config(
        pack=PackConfig(series=100, initial_soc=0.5, seed=1),
        spread=NO_SPREAD,
        contactors=contactors,
    )
    return Pack(cfg)


@dataclass
class Tick:
    t: float
    state: ContactorState
    cmds: dict[str, bool]
    actual: dict[str, bool]  # plant contactors after the commands were applied
    bus_v: float  # true link voltage when the commands were given
    pack_v: float  # true pack voltage then
    m: Measurement
    current_a: float = 0.0  # true pack current over the step that followed


@dataclass
class Loop:
    pack: Pack
    ctl: ContactorControl
    t0: float = 0.0  # offset of the firmware clock (it must only use differences)
    log: list[Tick] = field(default_factory=list)

    def tick(
        self,
        request: str,
        current_a: float | Callable[[float], float] = 0.0,
        fault_open: bool = False,
        edit: Callable[[Measurement], None] | None = None,
    ) -> Tick:
        pack = self.pack
        m = pack.sensors.measure()
        if edit is not None:
            edit(m)
        t = self.t0 + pack.time_s
        cmds = self.ctl.update(t, m, request, fault_open)
        pack.contactors.command(**cmds)
        rec = Tick(
            t,
            self.ctl.state,
            cmds,
            pack.contactors.actual,
            pack.contactors.bus_voltage_v,
            pack.voltage_v,
            m,
        )
        i = current_a(t) if callable(current_a) else current_a
        pack.step(i, DT)
        rec.current_a = pack.current_a
        self.log.append(rec)
        return rec

    def run(
        self,
        seconds: float,
        request: str,
        current_a: float | Callable[[float], float] = 0.0,
        fault_open: bool = False,
        edit: Callable[[Measurement], None] | None = None,
        until: Callable[[Tick], bool] | None = None,
    ) -> Tick:
        """Run for ``seconds`` (or until ``until(tick)``); return the last tick."""
        for _ in range(round(seconds / DT)):
            rec = self.tick(request, current_a, fault_open, edit)
            if until is not None and until(rec):
                return rec
        if until is not None:
            raise AssertionError(f"condition not reached in {seconds} s (state {rec.state})")
        return rec

    def first(self, pred: Callable[[Tick], bool], start: int = 0) -> int:
        return next(k for k in range(start, len(self.log)) if pred(self.log[k]))


def closed_loop(cfg: ContactorControlConfig | None = None, request: str = "drive") -> Loop:
    """A pack whose firmware has closed the contactors for ``request``."""
    loop = Loop(plant(), ContactorControl(cfg))
    loop.run(1.0, request, until=lambda r: r.state in (S.CLOSED_DRIVE, S.CLOSED_CHARGE))
    return loop


# ---------------------------------------------------------------------- closing


@pytest.mark.parametrize(
    ("request_", "current_a", "closed_state", "t0"),
    [("drive", 100.0, S.CLOSED_DRIVE, 0.0), ("charge", -100.0, S.CLOSED_CHARGE, 86_400.0)],
)
def test_request_precharges_link_to_95_percent_then_closes_mains_within_timeout(
    request_, current_a, closed_state, t0
) -> None:
    pack = plant()
    cfg = ContactorControlConfig()
    loop = Loop(pack, ContactorControl(cfg), t0=t0)
    loop.run(0.6, request_, current_a)
    log = loop.log

    # main_neg and precharge close at once; main_pos never without main_neg
    assert log[0].cmds == {"main_pos": False, "main_neg": True, "precharge": True}
    assert all(r.cmds["main_neg"] for r in log if r.cmds["main_pos"])
    k_pos = loop.first(lambda r: r.cmds["main_pos"])
    assert log[k_pos].t - t0 <= cfg.precharge_timeout_s
    # main_pos closes only once the link is charged (tolerance: sensor offsets and gains)
    assert log[k_pos].bus_v >= (cfg.precharge_ratio - 0.003) * log[k_pos].pack_v
    assert log[k_pos - 1].bus_v < cfg.precharge_ratio * log[k_pos - 1].pack_v
    # before the mains closed the vehicle's current did not flow, only the link's charge
    assert all(abs(r.current_a) < log[0].pack_v / 50.0 + 0.1 for r in log[:k_pos])
    # precharge opens after main_pos is closed, at least overlap_s later
    k_pre = loop.first(lambda r: not r.cmds["precharge"], start=k_pos)
    assert log[k_pre].t - log[k_pos].t >= cfg.overlap_s - EPS
    assert log[k_pre].actual["main_pos"] and log[k_pre].actual["main_neg"]
    assert all(r.cmds["precharge"] for r in log[k_pos:k_pre])
    # closed: the current flows and the sensor sees it
    last = log[-1]
    assert last.state is closed_state
    assert last.actual == {"main_pos": True, "main_neg": True, "precharge": False}
    assert last.current_a == current_a
    assert last.m.current_a == pytest.approx(current_a, abs=2.0)
    ctl = loop.ctl
    assert (ctl.closings, ctl.precharge_attempts, ctl.openings_under_load) == (1, 1, 0)
    assert ctl.faults == set()
    assert ctl.time_in_state_s == pytest.approx(last.t - log[k_pre].t, abs=EPS)


@pytest.mark.parametrize("retries", [0, 2])
def test_precharge_timeout_retries_the_configured_times_then_faults_all_open(retries) -> None:
    # tau = 1000 ohm * 1 mF = 1 s: 95 % would take 3 s, the timeout is 1 s; the link still
    # rises fast enough not to trip the early stall check
    pack = plant(ContactorConfig(precharge_resistor_ohm=1000.0))
    cfg = ContactorControlConfig(precharge_retries=retries, retry_delay_s=0.5)
    loop = Loop(pack, ContactorControl(cfg))
    n = retries + 1
    loop.run(n * 1.5 + 1.0, "drive")
    log, ctl = loop.log, loop.ctl

    assert ctl.state is S.FAULT
    assert ctl.faults == {PRECHARGE_FAULT}
    assert ctl.precharge_attempts == n
    assert ctl.closings == 0
    assert not any(r.cmds["main_pos"] for r in log)
    assert pack.contactors.actual == {"main_pos": False, "main_neg": False, "precharge": False}
    starts = [
        k for k in range(len(log)) if log[k].cmds["precharge"] and not log[k - 1].cmds["precharge"]
    ]
    ends = [
        k
        for k in range(1, len(log))
        if log[k - 1].cmds["precharge"] and not log[k].cmds["precharge"]
    ]
    assert len(starts) == len(ends) == n
    for a, b in zip(starts, ends, strict=True):  # each attempt runs the full timeout
        assert log[b].t - log[a].t == pytest.approx(cfg.precharge_timeout_s, abs=DT + EPS)
    for b, a in zip(ends[:-1], starts[1:], strict=True):
        assert log[a].t - log[b].t == pytest.approx(cfg.retry_delay_s, abs=DT + EPS)
    k_fault = loop.first(lambda r: r.state is S.FAULT)
    assert k_fault == ends[-1]
    # latched: a drive request does not start another attempt
    loop.run(1.0, "drive")
    assert ctl.state is S.FAULT and ctl.precharge_attempts == n


def test_precharge_stops_early_when_the_bus_voltage_does_not_rise() -> None:
    pack = plant(ContactorConfig(precharge_resistor_ohm=1e6))  # tau 1000 s: link not charging
    cfg = ContactorControlConfig()
    loop = Loop(pack, ContactorControl(cfg))
    loop.run(5.0, "drive", until=lambda r: r.state is S.FAULT)
    n = cfg.precharge_retries + 1
    expected_s = n * cfg.precharge_stall_s + (n - 1) * cfg.retry_delay_s
    assert loop.log[-1].t == pytest.approx(expected_s, abs=n * DT + EPS)
    assert loop.ctl.faults == {PRECHARGE_FAULT}
    assert loop.ctl.precharge_attempts == n


# ---------------------------------------------------------------------- fault opening


@pytest.mark.parametrize("delay_s", [0.5, 0.0])
def test_fault_open_at_300a_opens_after_delay_counts_load_and_latches(delay_s) -> None:
    cfg = ContactorControlConfig(fault_open_delay_s=delay_s)
    loop = closed_loop(cfg)
    loop.run(0.2, "drive", 300.0)
    ctl, pack = loop.ctl, loop.pack
    k_fault = len(loop.log)
    t_fault = loop.run(0.01, "drive", 300.0, fault_open=True).t
    if delay_s > 0.0:
        assert ctl.state is S.OPENING and pack.contactors.closed  # the vehicle's warning time
    rec = loop.run(
        delay_s + 0.5,
        "drive",
        300.0,
        fault_open=True,
        until=lambda r: not any(r.actual.values()),
    )
    assert rec.t - t_fault <= delay_s + DT + EPS
    assert rec.t - t_fault >= delay_s - EPS
    k_open = loop.first(lambda r: not r.cmds["main_pos"], start=k_fault)
    assert loop.log[k_open].m.current_a == pytest.approx(300.0, abs=5.0)  # opened under load
    assert loop.log[k_open - 1].current_a == 300.0
    assert loop.log[k_open].current_a == rec.current_a == 0.0
    assert ctl.openings_under_load == 1
    assert ctl.state is S.FAULT
    assert ctl.faults == {FAULT_OPEN}

    # latched: not while the fault is present, nor without standby, nor without reset()
    ctl.reset()
    assert loop.tick("standby", fault_open=True).state is S.FAULT
    ctl.reset()
    assert loop.tick("drive").state is S.FAULT
    ctl.reset()
    loop.tick("standby", fault_open=True)
    assert loop.tick("standby").state is S.FAULT  # an earlier reset() is not remembered
    ctl.reset()
    assert loop.tick("standby").state is S.STANDBY
    assert ctl.faults == set()
    assert ctl.openings_under_load == 1


def test_closing_after_an_opening_waits_until_the_link_discharged() -> None:
    """The bus-voltage weld check runs to its end before the mains may close again."""
    loop = closed_loop()
    ctl, pack = loop.ctl, loop.pack
    loop.run(1.0, "standby", until=lambda r: r.state is S.STANDBY)
    assert ctl.weld_check_pending
    rec = loop.run(12.0, "drive", until=lambda r: r.cmds["main_neg"])
    assert rec.bus_v < ctl.cfg.weld_voltage_ratio * rec.pack_v
    assert rec.t > 5.0  # the plant's link discharges with tau = 10 s
    loop.run(1.0, "drive", until=lambda r: r.state is S.CLOSED_DRIVE)
    assert ctl.closings == 2 and ctl.faults == set()
    assert pack.contactors.closed


def test_fault_open_in_standby_keeps_contactors_open_without_latching() -> None:
    loop = Loop(plant(), ContactorControl())
    loop.run(0.5, "drive", fault_open=True)
    assert all(not any(r.cmds.values()) for r in loop.log)
    assert loop.ctl.state is S.STANDBY and loop.ctl.precharge_attempts == 0
    loop.run(1.0, "drive", until=lambda r: r.state is S.CLOSED_DRIVE)


# ---------------------------------------------------------------------- normal opening


def test_normal_open_waits_for_current_to_drop_then_opens_main_pos_before_main_neg() -> None:
    loop = closed_loop()
    loop.run(0.2, "drive", 200.0)
    t_req = loop.log[-1].t + DT
    k0 = len(loop.log)

    def vehicle(t: float) -> float:  # keeps 200 A for 0.3 s, then ramps down over 0.2 s
        return max(0.0, 200.0 * min(1.0, 1.0 - (t - t_req - 0.3) / 0.2))

    loop.run(1.5, "standby", vehicle, until=lambda r: r.state is S.STANDBY)
    log = loop.log
    k_pos = loop.first(lambda r: not r.cmds["main_pos"], start=k0)
    k_neg = loop.first(lambda r: not r.cmds["main_neg"], start=k0)
    assert all(r.state is S.OPENING and r.actual["main_pos"] for r in log[k0:k_pos])
    assert log[k_pos].t - t_req >= 0.3
    assert abs(log[k_pos].m.current_a) <= 5.0
    assert log[k_pos - 1].m.current_a > 5.0  # it opened as soon as the current allowed
    assert k_neg > k_pos
    assert log[k_pos].actual["main_neg"] and not log[k_pos].actual["main_pos"]
    assert loop.ctl.openings_under_load == 0
    assert loop.pack.contactors.actual == dict.fromkeys(
        ("main_pos", "main_neg", "precharge"), False
    )


def test_normal_open_gives_up_waiting_after_open_wait_s_and_counts_load() -> None:
    cfg = ContactorControlConfig(open_wait_s=0.4)
    loop = closed_loop(cfg)
    loop.run(0.1, "drive", 150.0)
    t_req = loop.log[-1].t + DT
    k0 = len(loop.log)
    loop.run(1.0, "standby", 150.0, until=lambda r: r.state is S.STANDBY)
    k_pos = loop.first(lambda r: not r.cmds["main_pos"], start=k0)
    assert loop.log[k_pos].t - t_req == pytest.approx(0.4, abs=EPS)
    assert loop.ctl.openings_under_load == 1
    assert loop.ctl.faults == set()


# ---------------------------------------------------------------------- feedback and welds


def test_welded_main_pos_detected_after_commanded_open() -> None:
    cfg = ContactorControlConfig()
    loop = closed_loop(cfg)
    loop.pack.contactors.weld("main_pos")
    t_req = loop.log[-1].t + DT
    rec = loop.run(1.0, "standby", until=lambda r: r.state is S.FAULT)
    assert loop.ctl.faults == {"main_pos welded"}
    assert rec.t - t_req <= cfg.feedback_timeout_s + 2 * DT + EPS
    assert rec.t - t_req >= cfg.feedback_timeout_s - EPS
    # main_neg held until main_pos was seen open; on the fault it opens (isolating the weld)
    assert all(r.cmds["main_neg"] for r in loop.log[:-1] if r.t >= t_req)
    assert rec.actual == {"main_pos": True, "main_neg": False, "precharge": False}
    assert not loop.pack.contactors.closed


@pytest.mark.parametrize("welded", [True, False])
def test_welded_mains_with_broken_feedback_caught_by_the_bus_voltage(welded) -> None:
    cfg = ContactorControlConfig()  # default weld check: 10 s against the plant's 10 s tau
    loop = closed_loop(cfg)
    ctl = loop.ctl
    if welded:
        loop.pack.contactors.weld("main_pos")
        loop.pack.contactors.weld("main_neg")

    def broken_feedback(m: Measurement) -> None:  # the aux contacts report the command
        m.contactor_feedback.update(ctl.commands)

    t_req = loop.log[-1].t + DT
    loop.run(1.0, "standby", edit=broken_feedback, until=lambda r: r.state is S.STANDBY)
    assert ctl.faults == set()  # the feedback did not see anything
    loop.run(
        12.0,
        "standby",
        edit=broken_feedback,
        until=lambda r: r.state is S.FAULT or not ctl.weld_check_pending,
    )
    last = loop.log[-1]
    if welded:
        assert ctl.state is S.FAULT
        assert ctl.faults == {WELD_BUS_FAULT}
        assert last.t - t_req == pytest.approx(cfg.weld_check_s, abs=3 * DT)
        assert loop.pack.contactors.closed  # the plant truth: still connected
    else:
        assert ctl.state is S.STANDBY and ctl.faults == set()
        assert last.bus_v < cfg.weld_voltage_ratio * last.pack_v + 1.0
        assert last.t - t_req < cfg.weld_check_s


def test_main_neg_feedback_lost_while_driving_opens_after_the_fault_delay() -> None:
    cfg = ContactorControlConfig()
    loop = closed_loop(cfg)

    def lost(m: Measurement) -> None:
        m.contactor_feedback["main_neg"] = False

    t0 = loop.log[-1].t + DT
    rec = loop.run(
        1.0, "drive", 100.0, edit=lost, until=lambda r: "main_neg feedback lost" in loop.ctl.faults
    )
    assert rec.t - t0 == pytest.approx(cfg.feedback_timeout_s, abs=DT + EPS)
    assert rec.state is S.OPENING and loop.pack.contactors.closed
    rec = loop.run(1.0, "drive", 100.0, edit=lost, until=lambda r: r.state is S.FAULT)
    assert rec.t - t0 == pytest.approx(
        cfg.feedback_timeout_s + cfg.fault_open_delay_s, abs=DT + EPS
    )
    assert not any(rec.actual.values())
    assert loop.ctl.openings_under_load == 1
    assert loop.ctl.faults == {"main_neg feedback lost"}


# ---------------------------------------------------------------------- requests, config


def test_unknown_request_counts_as_standby_and_is_logged_once(caplog) -> None:
    loop = closed_loop()
    with caplog.at_level(logging.WARNING, logger="bms.firmware.contactors"):
        loop.run(1.0, "bananas")
    assert loop.ctl.state is S.STANDBY
    assert loop.ctl.unknown_requests == 100
    assert [r.message for r in caplog.records if "bananas" in r.message] == [
        "contactor request 'bananas' unknown; treated as 'standby'"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("precharge_timeout_s", -1.0),
        ("feedback_timeout_s", -0.1),
        ("fault_open_delay_s", -0.5),
        ("precharge_ratio", 1.2),
        ("weld_voltage_ratio", 1.5),
        ("precharge_retries", -1),
        ("open_current_a", math.nan),
        ("precharge_stall_s", 2.0),  # not below the 1 s timeout
        ("precharge_stall_ratio", 0.96),  # not below precharge_ratio
    ],
)
def test_bad_config_raises_one_line_error_naming_the_field(name, value) -> None:
    with pytest.raises(ConfigError) as exc:
        ContactorControlConfig(**{name: value})
    msg = str(exc.value)
    assert f"[firmware.contactors] {name}:" in msg
    assert "\n" not in msg
    assert exc.value.field == f"[firmware.contactors] {name}"


# ---------------------------------------------------------------------- the steady path


def _script(loop: Loop) -> None:
    """Close, drive, switch to charge, a fault-open pulse and a reset, a feedback glitch,
    a reset with nothing latched, standby and a welded main while opening."""

    def glitch(m: Measurement) -> None:  # each auxiliary contact off its command awhile
        t = loop.pack.time_s
        for name, start, value in (
            ("main_pos", 1.2, False),
            ("main_neg", 1.5, False),
            ("precharge", 1.8, True),
        ):
            if start <= t < start + 0.05:
                m.contactor_feedback[name] = value

    loop.run(1.0, "drive", 100.0)
    loop.run(1.0, "drive", 50.0, edit=glitch)
    loop.run(1.5, "charge", -50.0)
    loop.run(0.05, "charge", -50.0, fault_open=True)
    loop.ctl.reset()
    loop.run(1.0, "charge", -50.0)
    loop.run(1.0, "standby")
    loop.ctl.reset()
    loop.run(2.0, "drive", 80.0)
    loop.pack.contactors.weld("main_neg")
    loop.run(1.0, "standby")
    loop.ctl.reset()
    loop.run(1.0, "standby")


def _snapshot(ctl: ContactorControl) -> tuple[object, ...]:
    return (
        ctl.state,
        dict(ctl._cmd),
        dict(ctl._mismatch_since),
        ctl._phase,
        ctl._phase_since,
        ctl._fault_since,
        ctl._weld_check_since,
        ctl._mains_closed_since_open,
        ctl.state_since_s,
        ctl.time_in_state_s,
        frozenset(ctl.faults),
        (ctl.closings, ctl.openings_under_load, ctl.precharge_attempts),
    )


def test_the_steady_path_does_exactly_what_the_full_update_does(monkeypatch) -> None:
    """The shortcut for the usual closed 10 ms (``_steady``) leaves the state machine as
    the full update leaves it, tick for tick, over a script that leaves and re-enters
    it every way; and it is taken on the closed ticks."""
    steady = ContactorControl._steady
    taken = []

    def counted(self, *args):
        took = steady(self, *args)
        taken.append(took)
        return took

    runs = []
    for shortcut in (True, False):
        monkeypatch.setattr(ContactorControl, "_steady", counted if shortcut else lambda *a: False)
        loop = Loop(plant(), ContactorControl())
        snaps: list[tuple[object, ...]] = []
        update = loop.ctl.update

        def recorded(*args, update=update, snaps=snaps, ctl=loop.ctl):
            cmds = update(*args)
            snaps.append((cmds, _snapshot(ctl)))
            return cmds

        loop.ctl.update = recorded  # type: ignore[method-assign]
        _script(loop)
        runs.append((snaps, [(r.state, r.cmds, r.actual) for r in loop.log]))
    assert len(runs[0][0]) == len(runs[1][0]) > 900
    for k, (a, b) in enumerate(zip(runs[0][0], runs[1][0], strict=True)):
        assert a == b, f"tick {k}"
    assert runs[0][1] == runs[1][1]
    assert 300 < sum(taken) < len(taken)  # the shortcut ran on the closed ticks, not all
