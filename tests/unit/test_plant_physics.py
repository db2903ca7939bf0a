"""Behaviour of the pack plant against independent references: closed-form
solutions, conservation laws, step-length invariance, Kirchhoff's laws in a
parallel group, the ends of the SOC range, contactors and bad inputs.

Zero-order hold: the plant takes each step's parameters (OCV included) at the
start of the step, so the terminal voltage at the end of step n carries the OCV
of the SOC at the start of that step. The analytic references below do the same.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from chemdata import flat, toy
from conftest import make_pack
from twin import Twin

from bms import Chemistry, InputError, load_chemistry
from bms.config import ModelConfig, SpreadConfig
from bms.plant import layout as L

R0, R1, TAU1, R2, TAU2 = 1.0e-3, 0.5e-3, 10.0, 0.3e-3, 400.0
Q_AS = 100.0 * 3600.0  # toy capacity
PLAIN = ModelConfig(hysteresis=False, thermal=False, self_discharge=False)


def flat_dict(**overrides):
    return toy(
        tables__r0_ohm=flat(R0),
        tables__r1_ohm=flat(R1),
        tables__tau1_s=flat(TAU1),
        tables__r2_ohm=flat(R2),
        tables__tau2_s=flat(TAU2),
        **overrides,
    )


@pytest.fixture(scope="module")
def flat_chem() -> Chemistry:
    """The toy chemistry (its OCV, which must rise with SOC) with constant R and tau."""
    return Chemistry.from_dict(flat_dict(), source="flat")


@pytest.fixture(scope="module")
def lfp_chem() -> Chemistry:
    return load_chemistry("lfp_280ah")


def finite_state(pack) -> bool:
    arrays = [
        pack.soc,
        pack.temp_c,
        pack.cell_current_a,
        pack.heat_w,
        pack.hysteresis,
        pack.rc_voltage_v,
        pack.group_voltage_v,
        pack.bleed_current_a,
        np.array([pack.voltage_v, pack.current_a]),
    ]
    return all(np.all(np.isfinite(a)) for a in arrays)


# ----------------------------------------------------------------------------- RC response


@pytest.mark.parametrize("current", [80.0, -80.0])
def test_rc_step_response_and_relaxation(flat_chem, current):
    pack = make_pack(flat_chem, series=1, soc=0.6, model=PLAIN)
    dt, n = 0.5, 1200  # 600 s of current: 60 tau1, 1.5 tau2
    trace = pack.run(np.full(n, current), dt)
    t = dt * np.arange(1, n + 1)
    soc_start = 0.6 - current * (t - dt) / Q_AS  # SOC at the start of each step
    ocv = np.array([flat_chem.ocv_v(s, 25.0) for s in soc_start])
    expected = (
        ocv
        - current * R0
        - current * R1 * (1 - np.exp(-t / TAU1))
        - current * R2 * (1 - np.exp(-t / TAU2))
    )
    np.testing.assert_allclose(trace["pack_voltage_v"], expected, rtol=0, atol=1e-9)
    soc_end = 0.6 - current * t[-1] / Q_AS
    np.testing.assert_allclose(pack.soc[0, 0], soc_end, rtol=1e-12)

    # relaxation at zero current: both RC voltages decay from where the step left them
    v1_end = current * R1 * (1 - math.exp(-t[-1] / TAU1))
    v2_end = current * R2 * (1 - math.exp(-t[-1] / TAU2))
    np.testing.assert_allclose(pack.rc_voltage_v[:, 0, 0], [v1_end, v2_end], rtol=1e-11)
    soc_before = pack.soc.copy()
    m = 2400
    relax = pack.run(np.zeros(m), dt)
    tr = dt * np.arange(1, m + 1)
    expected = (
        flat_chem.ocv_v(soc_end, 25.0) - v1_end * np.exp(-tr / TAU1) - v2_end * np.exp(-tr / TAU2)
    )
    np.testing.assert_allclose(relax["pack_voltage_v"], expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(pack.soc, soc_before)  # no current, no self-discharge


def test_hysteresis_state_follows_throughput(flat_chem):
    """h relaxes towards -1 / +1 as exp(-gamma * throughput / Q); at rest the voltage is
    the branch mix (charge + discharge)/2 + h (charge - discharge)/2 of the file."""
    gamma = flat_chem.hysteresis_gamma
    pack = make_pack(
        flat_chem, series=1, soc=0.7, model=ModelConfig(thermal=False, self_discharge=False)
    )
    pack.run(np.full(2160, 50.0), 1.0)  # 30 Ah out: 0.3 of capacity
    h1 = -1.0 + math.exp(-gamma * 0.3)
    np.testing.assert_allclose(pack.hysteresis[0, 0], h1, rtol=1e-12)
    soc = float(pack.soc[0, 0])
    v = pack.step(0.0, 1e5)  # RC pairs relax completely (250 tau2)
    chg, dis = flat_chem.ocv_v(soc, 25.0, "charge"), flat_chem.ocv_v(soc, 25.0, "discharge")
    np.testing.assert_allclose(v, 0.5 * (chg + dis) + 0.5 * (chg - dis) * h1, rtol=0, atol=1e-12)
    assert abs(v - dis) < 1e-4 < chg - v  # on the discharge branch
    pack.run(np.full(1440, -50.0), 1.0)  # 20 Ah in
    h2 = 1.0 + (h1 - 1.0) * math.exp(-gamma * 0.2)
    np.testing.assert_allclose(pack.hysteresis[0, 0], h2, rtol=1e-12)


def test_thermal_steady_state(flat_chem):
    """At constant current the cell settles at T_amb + I^2 (R0 + R1 + R2) / G."""
    chem = Chemistry.from_dict(flat_dict(thermal__heat_transfer_w_per_k=5.0), source="flat")
    pack = make_pack(chem, series=1, soc=0.9, model=ModelConfig(self_discharge=False))
    current, g = 20.0, 5.0  # thermal time constant 2 kg * 1000 J/kg/K / 5 W/K = 400 s
    pack.run(np.full(1440, current), 10.0)  # 4 h = 36 time constants
    t_inf = 25.0 + current**2 * (R0 + R1 + R2) / g
    np.testing.assert_allclose(pack.temp_c[0, 0], t_inf, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pack.heat_w[0, 0], current**2 * (R0 + R1 + R2), rtol=1e-9)


def test_thermal_decay_of_each_cell_follows_its_own_time_constant(toy_chem, rng):
    """The kernel computes exp(-dt / (Rth Cth)) once per run of equal time constants:
    cells configured apart still get their own factor, for every new step length."""
    pack = make_pack(toy_chem, series=6, parallel=2)
    p = pack._p
    p[L.P_RTH] = np.repeat(rng.uniform(0.1, 2.0, 4), 3)  # runs of equal ones, then apart
    p[L.P_RTH, -1] = 5.0
    for dt in (0.01, 0.02, 0.01, 1.0):
        pack.step(10.0, dt)
        want = np.exp(-dt / (p[L.P_RTH] * p[L.P_CTH]))
        # the compiled exp may round the last bit otherwise than numpy's (seen on one CPU);
        # a factor from another cell's time constant is off by many thousand ulps
        np.testing.assert_array_max_ulp(p[L.P_THDECAY], want, maxulp=2)


# ----------------------------------------------------------------------------- charge balance


def test_charge_balance_over_a_million_steps(toy_chem, rng):
    """Every group's cells together carry exactly the pack's charge (eta = 1)."""
    spread = SpreadConfig(
        capacity_rel=0.05, resistance_rel=0.2, soc_abs=0.02, self_discharge_rel=0.0
    )
    pack = make_pack(
        toy_chem,
        series=2,
        parallel=3,
        soc=0.8,
        spread=spread,
        model=ModelConfig(thermal=False, self_discharge=False),
    )
    dt = 0.1
    prof = rng.normal(2.0, 60.0, 1_000_000)  # net 2 A discharge, +-60 A noise
    soc0 = pack.soc.copy()
    pack.run(prof, dt)
    charge_as = float(np.sum(prof)) * dt
    assert charge_as > 1e5  # a net 56 Ah: the balance is not of two near-zero numbers
    cell_as = (soc0 - pack.soc) * pack.capacity_ah * 3600.0
    np.testing.assert_allclose(cell_as.sum(axis=1), [charge_as, charge_as], rtol=1e-9)
    assert np.ptp(cell_as, axis=1).min() > 100.0  # the parallel cells shared it unequally


def test_charge_balance_with_coulombic_efficiency(rng):
    eta = 0.97
    chem = Chemistry.from_dict(toy(cell__coulombic_efficiency=eta), source="toy-eta")
    spread = SpreadConfig(
        capacity_rel=0.05, resistance_rel=0.0, soc_abs=0.0, self_discharge_rel=0.0
    )
    pack = make_pack(
        chem,
        series=2,
        parallel=1,
        soc=0.5,
        spread=spread,
        model=ModelConfig(thermal=False, self_discharge=False),
    )
    dt = 0.1
    prof = rng.normal(0.0, 60.0, 1_000_000)
    soc0 = pack.soc.copy()
    pack.run(prof, dt)
    out_as = float(np.sum(prof[prof > 0])) * dt
    in_as = float(-np.sum(prof[prof < 0])) * dt
    cell_as = ((soc0 - pack.soc) * pack.capacity_ah * 3600.0).ravel()
    np.testing.assert_allclose(cell_as, [out_as - eta * in_as] * 2, rtol=1e-9)
    assert abs(cell_as[0] - (out_as - in_as)) > 1e3  # eta visibly matters


@pytest.mark.parametrize(
    ("temp_c", "capf"), [(0.0, 0.8), (12.5, 0.9), (35.0, 1.01), (60.0, 1.02), (-15.0, 0.8)]
)
def test_capacity_follows_temperature(toy_chem, temp_c, capf):
    """The toy's capacity factor: 0.8 / 1.0 / 1.02 at 0 / 25 / 45 degC, linear, held outside."""
    pack = make_pack(
        toy_chem,
        series=1,
        soc=0.9,
        temp_c=temp_c,
        model=ModelConfig(thermal=False, self_discharge=False),
    )
    pack.run(np.full(100, 50.0), 10.0)
    np.testing.assert_allclose(0.9 - pack.soc[0, 0], 50.0 * 1000.0 / (Q_AS * capf), rtol=1e-12)


# ----------------------------------------------------------------------------- step length


def _state(pack) -> dict[str, np.ndarray]:
    return {
        "soc": pack.soc.copy(),
        "v1": pack.rc_voltage_v[0].copy(),
        "v2": pack.rc_voltage_v[1].copy(),
        "h": pack.hysteresis.copy(),
        "temp_c": pack.temp_c.copy(),
        "v": np.array([pack.voltage_v]),
    }


def test_dt_invariance_exact_with_constant_parameters(flat_chem, rng):
    """Constant parameters: one 1 s step and ten 0.1 s steps give the same state (every state
    advances with its exact solution); the voltages differ only by the OCV's SOC lag."""
    model = ModelConfig(thermal=False)  # hysteresis and self-discharge (at a node) on
    spread = SpreadConfig(
        capacity_rel=0.05, resistance_rel=0.2, soc_abs=0.05, self_discharge_rel=0.3
    )
    a = make_pack(flat_chem, series=3, soc=0.5, spread=spread, model=model)
    b = make_pack(flat_chem, series=3, soc=0.5, spread=spread, model=model)

    def ocv_branch(soc, h):  # OCV_mid + M h from the file's own interpolation, summed
        out = 0.0
        for s_, h_ in zip(soc.ravel(), h.ravel(), strict=True):
            chg = flat_chem.ocv_v(s_, 25.0, "charge")
            dis = flat_chem.ocv_v(s_, 25.0, "discharge")
            out += 0.5 * (chg + dis) + 0.5 * (chg - dis) * h_
        return out

    for pack in (a, b):  # the same history: h about -0.6, RC pairs charged
        pack.step(180.0, 100.0)
    for i in rng.normal(0.0, 100.0, 30):
        i = float(i)
        ocv_a = ocv_branch(a.soc, a.hysteresis)  # at the start of the 1 s step
        va = a.step(i, 1.0)
        for _ in range(9):
            b.step(i, 0.1)
        ocv_b = ocv_branch(b.soc, b.hysteresis)  # at the start of the last 0.1 s step
        vb = b.step(i, 0.1)
        sa, sb = _state(a), _state(b)
        # rtol 1e-12; for values passing through zero an absolute floor of ~1e-14 of each
        # quantity's scale (h is O(1), RC voltages O(0.1 V)): 30 x 10 steps of rounding
        for key, atol in (
            ("soc", 1e-14),
            ("v1", 1e-15),
            ("v2", 1e-15),
            ("h", 1e-14),
            ("temp_c", 0.0),
        ):
            np.testing.assert_allclose(sa[key], sb[key], rtol=1e-12, atol=atol, err_msg=key)
        # V = OCV + M h (at the step's start) - v1' - v2' - R0 i: only the first part differs
        np.testing.assert_allclose(vb - va, ocv_b - ocv_a, rtol=0, atol=1e-11)
    assert np.all(np.abs(a.hysteresis) > 0.1)  # the hysteresis term is in play


# measured at 1C over 60 s of the LFP cell (hysteresis and thermal on): |1 s - 0.1 s| was
# 3.5e-8 SOC, 1.8e-6 V (RC1), 1.3e-8 V (RC2), 7.3e-7 (h), 9.6e-4 K, 1.1e-4 V (terminal);
# the bounds leave a factor of 3-10. All are first-order effects of holding the parameters
# (R(T), tau(T), capacity(T), OCV(SOC)) for a step: the error shrinks tenfold with dt.
DT_BOUNDS = {"soc": 2e-7, "v1": 1e-5, "v2": 1e-7, "h": 5e-6, "temp_c": 5e-3, "v": 5e-4}


@pytest.mark.parametrize("current", [280.0, -280.0])
def test_dt_invariance_close_with_lfp_tables(lfp_chem, current):
    def after_60s(dt):
        pack = make_pack(lfp_chem, series=2, soc=0.5, spread=SpreadConfig())
        pack.run(np.full(round(60.0 / dt), current), dt)
        return _state(pack)

    coarse, fine, ref = after_60s(1.0), after_60s(0.1), after_60s(0.001)
    for key, bound in DT_BOUNDS.items():
        diff = np.max(np.abs(coarse[key] - fine[key]))
        assert diff < bound, f"{key}: 1 s and 0.1 s steps differ by {diff:.3g} (> {bound:g})"
        # first order: ten times shorter steps, ten times smaller error
        ratio = np.max(np.abs(coarse[key] - ref[key])) / np.max(np.abs(fine[key] - ref[key]))
        assert 8.0 < ratio < 12.5, f"{key}: error ratio {ratio:.2f} for a 10x shorter step"


# ----------------------------------------------------------------------------- parallel groups


def _group_checks(pack, twin, current, g_extra):
    """Kirchhoff in every group: sum(i) = I + V (g_bleed + g_leak), one terminal voltage."""
    i_cells = pack.cell_current_a
    v = pack.group_voltage_v
    a = np.array(twin.a).reshape(pack.n_series, pack.n_parallel)
    b = np.array(twin.b).reshape(pack.n_series, pack.n_parallel)
    np.testing.assert_allclose(i_cells.sum(axis=1), current + v * g_extra, rtol=1e-12, atol=1e-9)
    # every cell's own V = a - b i gives the group's single terminal voltage
    np.testing.assert_allclose(
        a - b * i_cells, np.repeat(v[:, None], pack.n_parallel, axis=1), rtol=0, atol=1e-11
    )


def test_parallel_group_kirchhoff(toy_chem, rng):
    spread = SpreadConfig(
        capacity_rel=0.05, resistance_rel=0.25, soc_abs=0.05, self_discharge_rel=0.0
    )
    pack = make_pack(
        toy_chem,
        series=3,
        parallel=4,
        soc=0.5,
        spread=spread,
        model=ModelConfig(self_discharge=False),
    )
    twin = Twin.from_pack(pack)
    no_extra = np.zeros(3)
    for k, i in enumerate(rng.normal(0.0, 200.0, 30)):
        i = 0.0 if k % 5 == 0 else float(i)
        pack.step(i, 0.5)
        twin.step(i, 0.5)
        _group_checks(pack, twin, i, no_extra)
        spread_a = np.ptp(pack.cell_current_a, axis=1)
        assert np.all(spread_a > 1e-3)  # cells really share unequally (and circulate at rest)

    # bleed on group 0, an internal short on cell (2, 1)
    r_bleed, r_short = pack.config.balancing.resistor_ohm, 1.5
    pack.set_bleed([True, False, False])
    pack.inject_internal_short(pack.cell_index(2, 1), r_short)
    twin.g_bleed = [1.0 / r_bleed, 0.0, 0.0]
    twin.g_leak[pack.cell_index(2, 1)] = 1.0 / r_short
    extra = np.array([1.0 / r_bleed, 0.0, 1.0 / r_short])
    for i in rng.normal(0.0, 200.0, 10):
        pack.step(float(i), 0.5)
        twin.step(float(i), 0.5)
        _group_checks(pack, twin, float(i), extra)
        v = pack.group_voltage_v
        np.testing.assert_allclose(pack.bleed_current_a, [v[0] / r_bleed, 0.0, 0.0], rtol=1e-14)
        assert pack.cell_current_a[2].sum() - float(i) > 2.0  # the short draws > 2 A


# ----------------------------------------------------------------------------- SOC range ends

OCV_MID_0, SLOPE_0, M_0 = 2.595, 6.2, 0.01  # toy at 25 degC: mid OCV at 0 %, V per unit SOC
OCV_MID_1, SLOPE_1, M_1 = 3.495, 1.5, 0.01  # at 100 %


def test_over_discharge(toy_chem):
    pack = make_pack(
        toy_chem, series=2, soc=0.05, model=ModelConfig(thermal=False, self_discharge=False)
    )
    trace = pack.run(np.full(540, 100.0), 1.0)  # 1C for 9 min: down to -0.1
    assert finite_state(pack) and np.all(np.isfinite(trace.data))
    assert pack.cells_empty == 2 and pack.cells_full == 0
    assert np.all(pack.cell_flags == 1)
    np.testing.assert_allclose(pack.soc, -0.1, atol=1e-12)
    v = trace["pack_voltage_v"] / 2
    # the voltage keeps falling while the cells are over-discharged (no floor at 0 %)
    assert np.all(np.diff(v[200:]) < 0)
    soc_start = float(pack.soc[0, 0])
    h = float(pack.hysteresis[0, 0])
    v_rest = pack.step(0.0, 1e5) / 2  # RC pairs relax completely
    expected = OCV_MID_0 + SLOPE_0 * soc_start + M_0 * h  # extrapolated from the end segment
    np.testing.assert_allclose(v_rest, expected, rtol=0, atol=1e-9)
    assert v_rest < toy_chem.ocv_v(0.0, 25.0, "discharge") - 0.5


@pytest.mark.parametrize("hysteresis", [False, True])
def test_ocv_floored_at_zero(toy_chem, hysteresis):
    """Far below 0 % the extrapolated OCV would be negative (< 0 below SOC -0.42); the
    open-circuit voltage, hysteresis offset included, is held at 0 V: a dead cell never
    rests at a negative voltage."""
    pack = make_pack(
        toy_chem, series=1, soc=0.1, model=ModelConfig(hysteresis=hysteresis, self_discharge=False)
    )
    pack.step(100.0, 3600.0 * 1.1)  # to SOC -1.0 in one step
    np.testing.assert_allclose(pack.soc[0, 0], -1.0, atol=1e-12)
    v_rest = pack.step(0.0, 1e5)
    assert finite_state(pack)
    assert pack.cell_flags[0, 0] == 1
    h = float(pack.hysteresis[0, 0])
    if hysteresis:
        assert h < -0.999
    np.testing.assert_allclose(v_rest, 0.0, rtol=0, atol=1e-12)


def test_over_charge(toy_chem):
    pack = make_pack(
        toy_chem, series=2, soc=0.95, model=ModelConfig(thermal=False, self_discharge=False)
    )
    trace = pack.run(np.full(540, -100.0), 1.0)  # 1C charge for 9 min: up to 1.1
    assert finite_state(pack) and np.all(np.isfinite(trace.data))
    assert pack.cells_full == 2 and pack.cells_empty == 0
    assert np.all(pack.cell_flags == 2)
    np.testing.assert_allclose(pack.soc, 1.1, atol=1e-12)
    assert np.all(np.diff(trace["pack_voltage_v"][200:]) > 0)
    soc_start, h = float(pack.soc[0, 0]), float(pack.hysteresis[0, 0])
    v_rest = pack.step(0.0, 1e5) / 2
    np.testing.assert_allclose(
        v_rest, OCV_MID_1 + SLOPE_1 * (soc_start - 1.0) + M_1 * h, rtol=0, atol=1e-9
    )
    assert v_rest > toy_chem.ocv_v(1.0, 25.0, "charge") + 0.1


def test_flags_count_only_the_cells_past_the_ends(toy_chem):
    spread = SpreadConfig(
        capacity_rel=0.05, resistance_rel=0.0, soc_abs=0.01, self_discharge_rel=0.0
    )
    pack = make_pack(toy_chem, series=8, soc=0.02, spread=spread)
    pack.run(np.full(60, 100.0), 1.0)  # 1.67 Ah: some cells cross 0 %, some not
    empty = pack.soc < 0.0
    assert 0 < empty.sum() < pack.n_cells
    assert pack.cells_empty == empty.sum() and pack.cells_full == 0
    np.testing.assert_array_equal(pack.cell_flags, np.where(empty, 1, 0))
    pack.set_soc(np.linspace(0.97, 0.995, 8))
    assert pack.cells_empty == 0  # set_soc clears the flags
    pack.run(np.full(60, -100.0), 1.0)
    full = pack.soc > 1.0
    assert 0 < full.sum() < pack.n_cells
    assert pack.cells_full == full.sum() and pack.cells_empty == 0
    np.testing.assert_array_equal(pack.cell_flags, np.where(full, 2, 0))


def test_extreme_abuse_stays_finite(lfp_chem):
    pack = make_pack(lfp_chem, series=2, parallel=2, soc=0.5, spread=SpreadConfig())
    pack.inject_internal_short(1, 0.01)
    for i, dt in [
        (5600.0, 600.0),
        (0.0, 3600.0),
        (-5600.0, 1800.0),
        (-2800.0, 3600.0),
        (0.0, 3600.0),
    ]:
        pack.step(i, dt)
        assert finite_state(pack), (i, dt)
    assert pack.cells_full > 0 or pack.cells_empty > 0


# ----------------------------------------------------------------------------- contactors


def test_open_contactors_carry_no_current(toy_chem):
    pack = make_pack(
        toy_chem, series=3, soc=0.6, closed=False, model=ModelConfig(thermal=False)
    )  # self-discharge on
    soc0 = pack.soc.copy()
    dt, n = 10.0, 30
    for _ in range(n):
        pack.step(150.0, dt)
    assert pack.current_a == 0.0
    np.testing.assert_array_equal(pack.cell_current_a, 0.0)
    sd = toy_chem.self_discharge_perc_per_month / 100.0 / (30.0 * 86400.0)  # at 25 degC
    np.testing.assert_allclose(soc0 - pack.soc, sd * dt * n, rtol=1e-9)
    trace = pack.run(np.full(50, 150.0), dt)
    np.testing.assert_array_equal(trace["current_a"], 0.0)
    np.testing.assert_allclose(soc0 - pack.soc, sd * dt * (n + 50), rtol=1e-9)
    # closing the mains lets the current through
    pack.contactors.command(main_pos=True, main_neg=True)
    pack.step(150.0, dt)
    np.testing.assert_allclose(soc0 - pack.soc, sd * dt * (n + 51) + 150.0 * dt / Q_AS, rtol=1e-9)


def test_precharge_follows_rc_charging(toy_chem):
    pack = make_pack(
        toy_chem, series=100, soc=0.5, closed=False, model=ModelConfig(self_discharge=False)
    )
    cfg = pack.config.contactors
    tau = cfg.precharge_resistor_ohm * cfg.link_capacitance_f  # 50 ms
    v_pack = pack.voltage_v
    assert v_pack > 300.0 and pack.contactors.bus_voltage_v == 0.0
    soc0 = pack.soc.copy()
    pack.contactors.command(main_neg=True, precharge=True)
    dt, n = 1e-3, 300  # 6 tau
    bus, cur = [], []
    for _ in range(n):
        pack.step(500.0, dt)  # the vehicle's demand does not flow while precharging
        bus.append(pack.contactors.bus_voltage_v)
        cur.append(pack.current_a)
    t = dt * np.arange(1, n + 1)
    expected = v_pack * (1.0 - np.exp(-t / tau))
    # the pack sags by the precharge current times its resistance (< 0.2 %), and the link
    # follows the pack voltage of the step before: within 0.5 % of V_pack
    np.testing.assert_allclose(bus, expected, rtol=0, atol=5e-3 * v_pack)
    assert max(cur) < 1.01 * v_pack / cfg.precharge_resistor_ohm
    assert cur[0] > 0.9 * v_pack / cfg.precharge_resistor_ohm * tau / dt * (1 - math.exp(-dt / tau))
    # the charge in the link came out of the cells
    link_as = cfg.link_capacitance_f * bus[-1]
    np.testing.assert_allclose(np.sum(cur) * dt, link_as, rtol=1e-9)
    np.testing.assert_allclose((soc0 - pack.soc) * Q_AS, link_as, rtol=1e-6)
    pack.contactors.command(main_pos=True)
    v = pack.step(0.0, dt)
    assert pack.contactors.bus_voltage_v == v


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("current", "dt", "names"),
    [
        (float("nan"), 1.0, "current_a"),
        (float("inf"), 1.0, "current_a"),
        (-float("inf"), 1.0, "current_a"),
        (1.0, 0.0, "dt_s"),
        (1.0, -0.5, "dt_s"),
        (1.0, float("nan"), "dt_s"),
        (1.0, float("inf"), "dt_s"),
    ],
)
def test_step_rejects_bad_input(toy_chem, current, dt, names):
    pack = make_pack(toy_chem, series=2)
    soc0, t0 = pack.soc.copy(), pack.time_s
    with pytest.raises(InputError) as info:
        pack.step(current, dt)
    msg = str(info.value)
    assert names in msg and "\n" not in msg
    np.testing.assert_array_equal(pack.soc, soc0)
    assert pack.time_s == t0


@pytest.mark.parametrize(
    ("index", "bad"), [(7, float("nan")), (0, float("inf")), (99, -float("inf"))]
)
def test_run_names_the_bad_step(toy_chem, index, bad):
    pack = make_pack(toy_chem, series=2)
    prof = np.full(100, 10.0)
    prof[index] = bad
    soc0 = pack.soc.copy()
    with pytest.raises(InputError) as info:
        pack.run(prof, 1.0)
    msg = str(info.value)
    assert f"step {index}" in msg and "\n" not in msg
    np.testing.assert_array_equal(pack.soc, soc0)


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan")])
def test_run_rejects_bad_dt(toy_chem, dt):
    pack = make_pack(toy_chem, series=2)
    with pytest.raises(InputError, match="dt_s") as info:
        pack.run(np.ones(3), dt)
    assert "\n" not in str(info.value)
