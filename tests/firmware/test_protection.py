"""Protections trip within their debounce time plus one task period, open the contactors
(a latched fault) and clear only as specified."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_pack

from bms import ConfigError, load_config
from bms.config import ProtectionConfig
from bms.firmware.kernels import debounce_kernel
from bms.firmware.protection import PLAUSIBILITY, Protections
from bms.plant import Measurement

PERIOD = 0.01  # the 10 ms task
CLOSED = {"main_pos": True, "main_neg": True, "precharge": False}
OPEN = {"main_pos": False, "main_neg": False, "precharge": False}


def meas(cells=None, temps=None, current=0.0, feedback=CLOSED, n=8) -> Measurement:
    v = np.full(n, 3.30) if cells is None else np.asarray(cells, dtype=float)
    t = np.full(4, 25.0) if temps is None else np.asarray(temps, dtype=float)
    return Measurement(0.0, v, t, current, float(v.sum()), float(v.sum()), dict(feedback))


def first_time(prot: Protections, m: Measurement, name: str, level: int, limit_s: float = 30):
    t = 0.0
    while t < limit_s:
        t += PERIOD
        st = prot.update(m, PERIOD, 0.0)
        if st.levels[name] >= level:
            return t
    return None


def measurement_for(name: str, value: float) -> Measurement:
    """A measurement whose checked quantity for ``name`` is ``value``."""
    if name == "cell_overvoltage" or name == "cell_undervoltage":
        return meas(cells=[3.3] * 7 + [value])
    if name == "cell_spread":
        return meas(cells=[3.3] * 7 + [3.3 + value])
    if name.endswith("temp"):
        current = -50.0 if name.startswith("charge") else 50.0
        return meas(temps=[25.0, 25.0, 25.0, value], current=current)
    if name == "charge_overcurrent":
        return meas(current=-value)
    return meas(current=value)  # discharge_overcurrent


CHECKS = [
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overtemp",
    "discharge_overtemp",
    "charge_undertemp",
    "discharge_undertemp",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_spread",
]


@pytest.mark.parametrize("name", CHECKS)
def test_every_level_trips_within_its_debounce_plus_one_period(name) -> None:
    cfg = ProtectionConfig()
    lim = getattr(cfg, name)
    w, a, f = lim.warning, lim.alarm, lim.fault
    beyond = (f - a) * 0.5 if lim.above else (a - f) * -0.5  # a step past each limit
    values = (w + (a - w) / 2, a + (f - a) / 2, f + beyond)
    for level, (value, debounce) in enumerate(
        zip(values, (lim.warning_s, lim.alarm_s, lim.fault_s), strict=True), start=1
    ):
        prot = Protections(cfg, 8, 4)
        t = first_time(prot, measurement_for(name, value), name, level)
        assert t is not None and debounce - 1e-9 <= t <= debounce + PERIOD + 1e-9, (level, t)
        assert prot.status.levels[name] == level  # no higher level than the value reaches
    assert prot.status.fault and name in prot.status.latched


def test_a_fault_latches_until_reset_with_the_condition_gone() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    hot = meas(cells=[3.3] * 7 + [3.75])
    assert first_time(prot, hot, "cell_overvoltage", 3) is not None
    assert not prot.reset()  # still over-voltage: the fault stays
    ok = meas()
    for _ in range(int(3.0 / PERIOD)):  # clear_s (2 s) and more
        prot.update(ok, PERIOD, 0.0)
    assert prot.status.levels["cell_overvoltage"] == 0
    assert prot.status.fault  # latched although the condition is gone
    assert prot.reset() and not prot.status.fault


def test_warnings_clear_by_themselves_after_clear_time() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    warm = meas(cells=[3.3] * 7 + [3.62])  # above the warning, below the alarm
    assert first_time(prot, warm, "cell_overvoltage", 1) is not None
    ok = meas()
    cleared_at = first_time_clear(prot, ok, "cell_overvoltage")
    assert 2.0 - 1e-9 <= cleared_at <= 2.0 + PERIOD + 1e-9
    assert not prot.status.fault


def first_time_clear(prot, m, name):
    t = 0.0
    while prot.status.levels[name] != 0:
        t += PERIOD
        prot.update(m, PERIOD, 0.0)
    return t


def test_cell_timers_are_per_group_not_of_the_pack_maximum() -> None:
    """Two groups above the limit in turn, each for less than the debounce: no fault."""
    prot = Protections(ProtectionConfig(), 8, 4)
    a = meas(cells=[3.75] + [3.3] * 7)
    b = meas(cells=[3.3, 3.75] + [3.3] * 6)
    for k in range(200):
        prot.update(a if (k // 30) % 2 == 0 else b, PERIOD, 0.0)
    assert prot.status.levels["cell_overvoltage"] < 3 and not prot.status.fault


def test_temperature_limits_depend_on_charge_or_discharge() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    t52 = [25, 25, 25, 52]  # above the charge alarm (50), below the discharge warning (55)
    assert first_time(prot, meas(temps=t52, current=100.0), "charge_overtemp", 1, 10) is None
    assert first_time(prot, meas(temps=t52, current=100.0), "discharge_overtemp", 1, 10) is None
    assert first_time(
        prot, meas(temps=t52, current=-100.0), "charge_overtemp", 2, 10
    ) == pytest.approx(5.0, abs=PERIOD + 1e-9)


def test_loss_of_vehicle_commands_raises_levels_with_the_silence() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    levels = [
        prot.update(meas(), PERIOD, s).levels["command_timeout"] for s in (0.1, 0.4, 0.6, 1.2)
    ]
    assert levels == [0, 1, 2, 3]


def test_open_sense_wire_on_the_plant_is_a_plausibility_fault() -> None:
    pack = make_pack(series=12)
    prot = Protections(ProtectionConfig(), 12, pack.sensors.n_temp_sensors)
    pack.sensors.open_sense_wire(5)
    t = 0.0
    while not prot.status.fault and t < 2.0:
        pack.step(50.0, PERIOD)
        t += PERIOD
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert prot.status.latched == {"cell_voltage_implausible"}
    assert t == pytest.approx(0.5, abs=PERIOD + 1e-9)


@pytest.mark.parametrize("mode", ["open", "short"])
def test_open_or_shorted_temperature_sensor_is_a_plausibility_fault(mode) -> None:
    pack = make_pack(series=12)
    prot = Protections(ProtectionConfig(), 12, pack.sensors.n_temp_sensors)
    pack.sensors.set_temp_sensor_fault(1, mode)
    for _ in range(60):
        pack.step(50.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert "temp_sensor_implausible" in prot.status.latched
    assert not {"charge_undertemp", "discharge_overtemp"} & prot.status.latched


def test_frozen_temperature_sensor_is_found_while_the_others_move() -> None:
    cfg = ProtectionConfig(temp_stuck_s=5.0)
    prot = Protections(cfg, 8, 4)
    rng = np.random.default_rng(1)
    for _ in range(int(6.0 / PERIOD)):
        temps = 25.0 + np.round(rng.normal(0, 0.2, 4), 1)
        temps[2] = 25.0  # frozen
        prot.update(meas(temps=temps), PERIOD, 0.0)
    assert "temp_sensor_stuck" in prot.status.latched


def test_current_with_the_mains_open_is_a_sensor_offset_fault() -> None:
    pack = make_pack(series=4, closed=False)
    prot = Protections(ProtectionConfig(), 4, pack.sensors.n_temp_sensors)
    for _ in range(100):
        pack.step(0.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert not prot.status.fault
    pack.sensors.set_current_offset_fault(5.0)
    for _ in range(60):
        pack.step(0.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert prot.status.latched == {"current_sensor_offset"}


def test_limits_out_of_order_in_a_file_name_the_limit(tmp_path) -> None:
    f = tmp_path / "bms.toml"
    f.write_text("[firmware.protection.cell_overvoltage]\nwarning = 3.7\nalarm = 3.65\n")
    with pytest.raises(
        ConfigError,
        match=r"\[firmware.protection.cell_overvoltage\]: needs "
        r"warning <= alarm <= fault, got 3.7, 3.65, 3.7",
    ):
        load_config(f)


# ---- plain-Python twin of the fused protection kernel: the per-check implementation


def twin_debounce(values, limits, above, debounce_s, clear_s, timers, levels, dt_s) -> None:
    """debounce_kernel, line by line."""
    for g in range(len(values)):
        v = values[g]
        lvl = 0
        for k in range(3):
            hit = v > limits[k] if above else v < limits[k]
            t = timers[g, k]
            if hit:
                t = t + dt_s if t >= 0.0 else dt_s
            else:
                t = t - dt_s if t <= 0.0 else -dt_s
            timers[g, k] = t
            if t >= debounce_s[k] - 1e-9:
                lvl = k + 1
            elif t < 0.0 and -t < clear_s and levels[g] >= k + 1:
                lvl = k + 1
        levels[g] = lvl


class TwinCheck:
    """One limit over n values, with its own debounce timers."""

    def __init__(self, lim, n: int):
        self.lim = lim
        self.timers = np.zeros((n, 3))
        self.levels = np.zeros(n, dtype=np.int64)

    def update(self, values, dt_s: float) -> int:
        lim = self.lim
        twin_debounce(
            np.asarray(values, dtype=float),
            (lim.warning, lim.alarm, lim.fault),
            lim.above,
            (lim.warning_s, lim.alarm_s, lim.fault_s),
            lim.clear_s,
            self.timers,
            self.levels,
            dt_s,
        )
        return int(self.levels.max())

    def idle(self, dt_s: float) -> int:
        self.timers[:] = np.minimum(self.timers, 0.0) - dt_s
        self.levels[:] = 0
        return 0


class TwinProtections:
    """The protections as separate checks on numpy arrays (the implementation before
    the fused kernel), for comparison."""

    PER_GROUP = ("cell_overvoltage", "cell_undervoltage")

    def __init__(self, cfg: ProtectionConfig, n_groups: int, n_temp_sensors: int):
        self.cfg = cfg
        names = [*CHECKS, "command_timeout"]
        self.checks = {
            k: TwinCheck(getattr(cfg, k), n_groups if k in self.PER_GROUP else 1) for k in names
        }
        self.plaus_s = dict.fromkeys(PLAUSIBILITY, 0.0)
        self.t_last = np.full(n_temp_sensors, np.nan)
        self.t_frozen_s = np.zeros(n_temp_sensors)
        self.levels: dict[str, int] = {}
        self.latched: set[str] = set()
        self.worst_group: dict[str, int] = {}

    def update(self, m: Measurement, dt_s: float, since_command_s: float) -> None:
        cfg, ch, lv = self.cfg, self.checks, self.levels
        v = m.cell_voltage_v
        plausible = (v > cfg.cell_voltage_plausible_v[0]) & (v < cfg.cell_voltage_plausible_v[1])
        ok_v = v[plausible]
        fill = np.median(ok_v) if ok_v.size else 3.0
        v_checked = np.where(plausible, v, fill)
        lv["cell_overvoltage"] = ch["cell_overvoltage"].update(v_checked, dt_s)
        lv["cell_undervoltage"] = ch["cell_undervoltage"].update(v_checked, dt_s)
        self.worst_group["cell_overvoltage"] = int(np.argmax(v))
        self.worst_group["cell_undervoltage"] = int(np.argmin(v))
        t = m.temp_c
        t_ok = t[(t > cfg.temp_plausible_c[0]) & (t < cfg.temp_plausible_c[1])]
        charging = m.current_a < -cfg.charge_current_a
        for name, pick, active in (
            ("charge_overtemp", np.max, charging),
            ("charge_undertemp", np.min, charging),
            ("discharge_overtemp", np.max, not charging),
            ("discharge_undertemp", np.min, not charging),
        ):
            check = ch[name]
            lv[name] = (
                check.update([pick(t_ok)], dt_s) if active and t_ok.size else check.idle(dt_s)
            )
        i = m.current_a
        lv["charge_overcurrent"] = ch["charge_overcurrent"].update([-i], dt_s)
        lv["discharge_overcurrent"] = ch["discharge_overcurrent"].update([i], dt_s)
        spread = float(ok_v.max() - ok_v.min()) if ok_v.size else 0.0
        lv["cell_spread"] = ch["cell_spread"].update([spread], dt_s)
        lv["command_timeout"] = ch["command_timeout"].update([since_command_s], dt_s)
        fb = m.contactor_feedback
        mains_open = not (fb.get("main_pos", False) or fb.get("main_neg", False))
        same = t == self.t_last
        self.t_frozen_s = np.where(same, self.t_frozen_s + dt_s, 0.0)
        self.t_last = t.copy()
        stuck = self.t_frozen_s >= cfg.temp_stuck_s
        frozen = t.size >= 2 and bool(stuck.any() and not stuck.all())
        for name, bad in (
            ("cell_voltage_implausible", ok_v.size < v.size),
            ("temp_sensor_implausible", t_ok.size < t.size),
            ("temp_sensor_stuck", frozen),
            ("current_sensor_offset", mains_open and abs(i) > cfg.current_offset_limit_a),
            ("current_implausible", not np.isfinite(i)),
        ):
            self.plaus_s[name] = self.plaus_s[name] + dt_s if bad else 0.0
            lv[name] = 3 if bad and self.plaus_s[name] >= cfg.plausibility_s - 1e-9 else 0
        self.latched |= {name for name, level in lv.items() if level == 3}

    def reset(self) -> bool:
        self.latched = {k for k in self.latched if self.levels.get(k, 0) == 3}
        return not self.latched


ODD_VOLTAGES = [np.nan, np.inf, -np.inf, 0.0, 0.5, 4.8, 5.0, 3.62, 3.67, 3.75, 2.7, 2.55, 2.4]
ODD_TEMPS = [np.nan, np.inf, -40.0, -39.0, 125.0, 130.0, 48.0, 60.0, 70.0, 2.0, -25.0, -35.0]
ODD_CURRENTS = [np.nan, np.inf, -np.inf, 0.0, 1.5, -1.0, -1.5, 3.0, -200.0, -300.0, -450.0]
ODD_CURRENTS += [450.0, 600.0, 750.0]


def random_measurements(rng: np.random.Generator, n: int, n_t: int, ticks: int):
    """Inputs that hold for a while and then change, so that every level of every check
    trips and clears: cells near and beyond the limits, open and shorted sensors, frozen
    readings, not-a-number readings, the mains opening and closing."""
    v, t = np.full(n, 3.3), np.full(n_t, 25.0)
    current, since_s, closed, moving = 0.0, 0.0, True, True
    for _ in range(ticks):
        if rng.random() < 0.05:  # near a limit or far apart
            v = rng.normal(rng.choice([3.3, 3.62, 3.68, 2.75, 2.55]), rng.choice([0.02, 0.2]), n)
        if rng.random() < 0.03:
            v[rng.integers(n)] = rng.choice(ODD_VOLTAGES)
        if rng.random() < 0.005:  # a cell monitoring unit lost
            v = np.full(n, np.nan)
        if rng.random() < 0.02:
            v = np.where(rng.random(n) < 0.5, rng.normal(3.3, 0.1, n), v)
        if rng.random() < 0.02:
            t = rng.normal(20.0, 30.0, n_t).round(1)
        if rng.random() < 0.03:
            t[rng.integers(n_t)] = rng.choice(ODD_TEMPS)
        if rng.random() < 0.03:
            moving = not moving
        if moving and rng.random() < 0.5:  # some sensors move, the others stay frozen
            t = np.where(rng.random(n_t) < 0.5, t + rng.normal(0.0, 0.2, n_t).round(1), t)
        if rng.random() < 0.05:
            current = float(rng.choice([*ODD_CURRENTS, rng.normal(0.0, 300.0)]))
        if rng.random() < 0.05:
            since_s = float(rng.choice([0.0, 0.2, 0.4, 0.7, 1.5, np.nan, rng.uniform(0, 2)]))
        if rng.random() < 0.03:
            closed = not closed
        fb = {"main_pos": closed, "main_neg": closed and rng.random() < 0.5, "precharge": False}
        yield Measurement(0.0, v.copy(), t.copy(), current, 0.0, 0.0, fb), since_s


def quick_config() -> ProtectionConfig:
    """Short debounce and clear times, staggered so that a step past the fault limit
    passes through every level within a few ticks."""
    names = [*CHECKS, "command_timeout"]
    quick = dict(warning_s=0.2, alarm_s=0.4, fault_s=0.6, clear_s=0.5)
    checks = {k: dataclasses.replace(getattr(ProtectionConfig(), k), **quick) for k in names}
    return ProtectionConfig(**checks, temp_stuck_s=1.0)


@pytest.mark.parametrize(
    ("n", "n_t", "quick"), [(8, 4, True), (7, 3, True), (1, 1, True), (2, 1, True), (8, 4, False)]
)
def test_fused_kernel_matches_the_per_check_twin_on_random_inputs(rng, n, n_t, quick) -> None:
    cfg = quick_config() if quick else ProtectionConfig()
    dt = 0.05
    prot, twin = Protections(cfg, n, n_t), TwinProtections(cfg, n, n_t)
    seen = set()
    for k, (m, since_s) in enumerate(random_measurements(rng, n, n_t, 2000)):
        if rng.random() < 0.01:
            assert prot.reset() == twin.reset()
        st = prot.update(m, dt, since_s)
        twin.update(m, dt, since_s)
        assert list(st.levels.items()) == list(twin.levels.items()), k
        assert st.latched == twin.latched, k
        assert st.worst_group == twin.worst_group, k
        for c, (name, check) in enumerate(twin.checks.items()):
            rows = check.timers.shape[0]
            c = list(prot._names).index(name)
            np.testing.assert_array_equal(prot._timers[c, :rows], check.timers, err_msg=name)
            np.testing.assert_array_equal(prot._row_levels[c, :rows], check.levels)
        np.testing.assert_array_equal(prot._plaus_s, list(twin.plaus_s.values()))
        np.testing.assert_array_equal(prot._t_frozen_s, twin.t_frozen_s)
        seen |= set(st.levels.items())
    if quick and n >= 2 and n_t >= 2:  # the inputs reach every level of every check
        assert seen >= {(name, 3) for name in prot.status.levels}
        assert seen >= {(name, lvl) for name in [*CHECKS, "command_timeout"] for lvl in (1, 2)}


def test_debounce_kernel_matches_its_twin(rng) -> None:
    lim = ProtectionConfig().cell_overvoltage
    args = ((lim.warning, lim.alarm, lim.fault), lim.above, (0.2, 0.1, 0.05), lim.clear_s)
    timers, levels = np.zeros((16, 3)), np.zeros(16, dtype=np.int64)
    t_timers, t_levels = timers.copy(), levels.copy()
    for _ in range(500):
        values = rng.normal(3.62, 0.05, 16)
        values[rng.random(16) < 0.05] = np.nan
        debounce_kernel(
            values, np.array(args[0]), *args[1:2], np.array(args[2]), args[3], timers, levels, 0.01
        )
        twin_debounce(values, *args, t_timers, t_levels, 0.01)
        np.testing.assert_array_equal(timers, t_timers)
        np.testing.assert_array_equal(levels, t_levels)


def test_a_measurement_of_another_pack_size_is_refused() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    with pytest.raises(ValueError, match="8 groups and 4 temperature sensors got 9 cell"):
        prot.update(meas(n=9), PERIOD, 0.0)


def _run_limits(p: Protections, current_a: float, seconds: float, limits=(100.0, 200.0)):
    """``seconds`` of 10 ms periods at ``current_a`` against (charge, discharge) limits;
    the time of the first warning and of the first fault (None when not seen)."""
    first: dict[int, float] = {}
    m = meas(np.full(4, 3.3), np.full(2, 25.0), current=current_a)
    for k in range(round(seconds / 0.01)):
        p.update(m, 0.01, 0.0)
        st = p.check_limits(current_a, limits[0], limits[1], 0.01)
        for level in (1, 3):
            if (
                st.levels["discharge_overcurrent" if current_a > 0 else "charge_overcurrent"]
                >= level
            ):
                first.setdefault(level, (k + 1) * 0.01)
    return first.get(1), first.get(3)


def test_a_draw_above_the_published_limit_warns_then_faults_and_latches() -> None:
    cfg = ProtectionConfig()
    p = Protections(cfg, 4, 2)
    warn, fault = _run_limits(p, 250.0, 12.0)  # 50 A over a 200 A discharge limit
    assert warn == pytest.approx(cfg.limit_warning_s, abs=0.011)
    assert fault == pytest.approx(cfg.limit_fault_s, abs=0.011)
    assert "discharge_overcurrent" in p.status.latched
    _run_limits(p, 0.0, 0.5)  # the draw stops: the level drops, the fault stays latched
    assert p.status.levels["discharge_overcurrent"] == 0
    assert p.status.fault
    assert p.reset() and not p.status.fault


def test_a_draw_within_the_margin_or_a_short_excursion_is_not_flagged() -> None:
    cfg = ProtectionConfig()
    p = Protections(cfg, 4, 2)
    margin = max(cfg.limit_margin_a, cfg.limit_margin_rel * 100.0)
    assert _run_limits(p, -(100.0 + 0.9 * margin), 15.0) == (None, None)  # charge, in margin
    # over the limit for less than the warning time, again and again: the timer restarts
    for _ in range(5):
        assert _run_limits(p, -150.0, 0.8 * cfg.limit_warning_s) == (None, None)
        _run_limits(p, 0.0, 0.05)
    assert not p.status.latched


def test_the_level_shown_is_the_higher_of_the_fixed_and_the_published_limit() -> None:
    cfg = ProtectionConfig()
    # 450 A against a 200 A limit: the fixed check would warn after 5 s (400 A) and never
    # fault; the published limit warns after 2 s and faults after 10 s
    p = Protections(cfg, 4, 2)
    warn, fault = _run_limits(p, 450.0, 11.0)
    assert cfg.discharge_overcurrent.warning < 450.0 < cfg.discharge_overcurrent.fault
    assert warn == pytest.approx(cfg.limit_warning_s, abs=0.011)
    assert fault == pytest.approx(cfg.limit_fault_s, abs=0.011)
    # 600 A within the margin of a 590 A limit: only the fixed check, its alarm (560 A)
    p = Protections(cfg, 4, 2)
    warn, fault = _run_limits(p, 600.0, 6.0, limits=(590.0, 590.0))
    assert fault is None
    assert p.status.levels["discharge_overcurrent"] == 2
