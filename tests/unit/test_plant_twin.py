"""Pack.step and Pack.run against the independent plain-Python twin (tests/twin.py).

The twin works on the chemistry file's own grids with its own interpolation; the
plant works on resampled uniform grids. Both evaluate the same piecewise-bilinear
model, so they agree to rounding: in 300 random steps of every configuration the
largest absolute differences were 1e-15 in SOC, 4e-16 V across an RC pair, 5e-15
in h, 4e-14 K, 6e-12 A and 8e-13 W. Hence RTOL = 1e-11 (room for accumulation
over a few hundred steps) plus small absolute floors for quantities that cross
zero (RC voltages, hysteresis state, circulating currents in parallel groups).

Not in the twin: the plant flushes RC voltages below 1e-30 V to zero (far inside
the absolute floors). Self-discharge is off wherever a cell's temperature leaves a
table node: the plant tabulates the Arrhenius factor on its uniform 5 K grid and
holds it outside that grid (the self-discharge tests at the end show the gap).
"""

from __future__ import annotations

import numpy as np
import pytest
from chemdata import toy
from conftest import make_pack
from hypothesis import given, settings
from hypothesis import strategies as st
from twin import RUN_COLUMNS, Twin, arrhenius, pack_state

from bms import Chemistry, load_chemistry
from bms.config import ModelConfig, SpreadConfig

RTOL = 1e-11
ATOL = {
    "soc": 1e-13,
    "v1": 1e-13,
    "v2": 1e-13,
    "h": 1e-12,
    "temp_c": 1e-11,
    "current_a": 1e-9,
    "heat_w": 1e-9,
    "flag": 0.0,
}
ATOL_V = 1e-11  # group and pack voltages (a few V; their rounding is ~1e-15 V)

SPREAD = SpreadConfig(capacity_rel=0.03, resistance_rel=0.15, soc_abs=0.03, self_discharge_rel=0.3)
# ten distinct step lengths: more than the plant's table cache holds (8)
DTS = (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 0.2, 0.05, 3.0)


@pytest.fixture(scope="session")
def lfp_chem() -> Chemistry:
    return load_chemistry("lfp_280ah")


@pytest.fixture(scope="session")
def toy_1rc() -> Chemistry:
    """The toy chemistry with one RC pair in the file."""
    d = toy()
    del d["tables"]["r2_ohm"], d["tables"]["tau2_s"]
    return Chemistry.from_dict(d, source="toy-1rc")


def assert_matches(
    pack, twin: Twin, v_pack: float | None = None, v_twin: float | None = None, what: str = ""
) -> None:
    got, want = pack_state(pack), twin.state()
    # a SOC within rounding of 0 or 1 may carry either flag: compare flags elsewhere
    soc = np.asarray(want["soc"])
    clear = np.minimum(np.abs(soc), np.abs(soc - 1.0)) > ATOL["soc"]
    for key, atol in ATOL.items():
        g, w = np.asarray(got[key]), np.asarray(want[key])
        if key == "flag":
            g, w = g[clear], w[clear]
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=atol, err_msg=f"{what} {key}")
    np.testing.assert_allclose(
        pack.group_voltage_v, twin.group_v, rtol=RTOL, atol=ATOL_V, err_msg=f"{what} group voltage"
    )
    np.testing.assert_allclose(
        pack.bleed_current_a, twin.bleed_a, rtol=RTOL, atol=1e-13, err_msg=f"{what} bleed current"
    )
    if v_pack is not None:
        np.testing.assert_allclose(
            v_pack, v_twin, rtol=RTOL, atol=ATOL_V, err_msg=f"{what} pack voltage"
        )


def build(
    chem: Chemistry,
    *,
    series: int,
    parallel: int,
    temp_c: float = 25.0,
    soc: float = 0.5,
    model: ModelConfig | None = None,
    bleed=None,
    short=None,
    weak=None,
    spread: SpreadConfig = SPREAD,
):
    pack = make_pack(
        chem,
        series=series,
        parallel=parallel,
        soc=soc,
        temp_c=temp_c,
        spread=spread,
        model=model if model is not None else ModelConfig(self_discharge=False),
    )
    if bleed is not None:
        pack.set_bleed(bleed)
    if short is not None:
        pack.inject_internal_short(*short)
    if weak is not None:
        pack.inject_weak_cell(weak, capacity_factor=0.6, resistance_factor=3.0)
    return pack, Twin.from_pack(pack)


SD_AT_NODE = ModelConfig(thermal=False, self_discharge=True)  # temperature stays at a node
NO_SD = ModelConfig(self_discharge=False)

# (chemistry fixture, keyword arguments of build)
SCENARIOS = {
    "toy-4s1p-25C-selfdis": ("toy_chem", dict(series=4, parallel=1, model=SD_AT_NODE)),
    "toy-4s1p-thermal": ("toy_chem", dict(series=4, parallel=1)),
    "toy-3s3p-bleed-short-weak": (
        "toy_chem",
        dict(series=3, parallel=3, bleed=[True, False, True], short=(4, 2.0), weak=7),
    ),
    "toy-1s1p-short-bleed": ("toy_chem", dict(series=1, parallel=1, bleed=[True], short=(0, 1.0))),
    "toy-2s3p-1rc-by-config": (
        "toy_chem",
        dict(series=2, parallel=3, model=ModelConfig(rc_pairs=1, self_discharge=False)),
    ),
    "toy-1rc-in-file": ("toy_1rc", dict(series=2, parallel=2)),
    "toy-no-rc-no-hyst": (
        "toy_chem",
        dict(
            series=2,
            parallel=2,
            model=ModelConfig(rc_pairs=0, hysteresis=False, self_discharge=False),
        ),
    ),
    "toy-hyst-off-selfdis": (
        "toy_chem",
        dict(series=2, parallel=2, temp_c=45.0, model=ModelConfig(hysteresis=False, thermal=False)),
    ),
    "toy-between-nodes-12C": ("toy_chem", dict(series=2, parallel=2, temp_c=12.3)),
    "toy-below-tables-m10C": ("toy_chem", dict(series=2, parallel=2, temp_c=-10.0)),
    "toy-above-tables-60C": ("toy_chem", dict(series=2, parallel=2, temp_c=60.0)),
    "lfp-4s1p-thermal": ("lfp_chem", dict(series=4, parallel=1)),
    "lfp-3s3p-bleed-short-weak": (
        "lfp_chem",
        dict(series=3, parallel=3, bleed=[False, True, True], short=(0, 0.5), weak=5),
    ),
    "lfp-0C-node-selfdis": ("lfp_chem", dict(series=2, parallel=2, temp_c=0.0, model=SD_AT_NODE)),
    "lfp-m15C-outside-2d-inside-cap": ("lfp_chem", dict(series=2, parallel=2, temp_c=-15.0)),
    "lfp-m30C-outside-all": ("lfp_chem", dict(series=2, parallel=2, temp_c=-30.0)),
    "lfp-50C-outside-2d": ("lfp_chem", dict(series=2, parallel=2, temp_c=50.0)),
    "lfp-70C-outside-all": ("lfp_chem", dict(series=2, parallel=2, temp_c=70.0)),
    "lfp-2s2p-1rc-no-hyst": (
        "lfp_chem",
        dict(
            series=2,
            parallel=2,
            model=ModelConfig(rc_pairs=1, hysteresis=False, self_discharge=False),
        ),
    ),
}


def profile(rng: np.random.Generator, capacity_ah: float, n: int) -> tuple[np.ndarray, list]:
    """Mixed charge/discharge currents up to ~2C, with bursts of rest, and step lengths."""
    cur = rng.normal(0.0, capacity_ah, n)
    cur[rng.random(n) < 0.15] = 0.0
    dts = [DTS[k] for k in rng.integers(0, len(DTS), n)]
    return cur, dts


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_step_matches_twin(name, request, rng):
    chem_fixture, kw = SCENARIOS[name]
    chem = request.getfixturevalue(chem_fixture)
    pack, twin = build(chem, **kw)
    cur, dts = profile(rng, chem.capacity_ah, 40)
    for k, (i, dt) in enumerate(zip(cur, dts, strict=True)):
        v = pack.step(float(i), dt)
        vt = twin.step(float(i), dt)
        assert_matches(pack, twin, v, vt, what=f"{name} step {k} (I={i:.3f}, dt={dt})")
    # the scenario did what it says: states moved, and a short or bleed actually leaks
    assert np.ptp(pack.soc) > 0 or pack.n_cells == 1
    if "short" in kw:
        c = kw["short"][0]
        assert twin.g_leak[c] > 0


@pytest.mark.parametrize(
    ("name", "dt"),
    [
        ("toy-3s3p-bleed-short-weak", 0.5),
        ("toy-3s3p-bleed-short-weak", 2.5),  # parallel groups: each step split in 3 sub-steps
        ("lfp-4s1p-thermal", 0.5),
        ("lfp-4s1p-thermal", 30.0),  # a series string takes long steps whole
        ("lfp-2s2p-1rc-no-hyst", 0.5),
        ("toy-4s1p-25C-selfdis", 0.5),
    ],
)
def test_run_matches_twin(name, dt, request, rng):
    chem_fixture, kw = SCENARIOS[name]
    chem = request.getfixturevalue(chem_fixture)
    pack, twin = build(chem, **kw)
    cur = rng.normal(0.3 * chem.capacity_ah, chem.capacity_ah, 210) * min(1.0, 0.5 / dt)
    every = 7
    trace = pack.run(cur, dt, snapshot_every=every)
    snaps = []
    want = {k: [] for k in RUN_COLUMNS}
    for k, i in enumerate(cur):
        row = twin.run([i], dt)
        for col in RUN_COLUMNS:
            want[col] += row[col]
        if (k + 1) % every == 0:
            snaps.append([twin.soc[:], twin.temp_c[:], twin.current[:]])
    for col in RUN_COLUMNS:
        atol = ATOL["soc"] if "soc" in col else ATOL_V
        np.testing.assert_allclose(trace[col], want[col], rtol=RTOL, atol=atol, err_msg=col)
    assert trace.snapshots.shape == (len(cur) // every, 3, pack.n_cells)
    np.testing.assert_allclose(
        trace.snapshots[:, 0], [s[0] for s in snaps], rtol=RTOL, atol=ATOL["soc"]
    )
    np.testing.assert_allclose(
        trace.snapshots[:, 1], [s[1] for s in snaps], rtol=RTOL, atol=ATOL["temp_c"]
    )
    np.testing.assert_allclose(
        trace.snapshots[:, 2], [s[2] for s in snaps], rtol=RTOL, atol=ATOL["current_a"]
    )
    assert_matches(pack, twin, pack.voltage_v, twin.voltage_v, what="after run")
    np.testing.assert_allclose(trace.time_s[-1], dt * len(cur), rtol=1e-15)
    # and the pack keeps stepping consistently after a run
    v, vt = pack.step(-50.0, 2.0), twin.step(-50.0, 2.0)
    assert_matches(pack, twin, v, vt, what="step after run")


def test_changes_between_steps_match_twin(toy_chem, rng):
    """Bleed switching, faults injected and cleared, ambient changes: the plant picks them up
    at the next step (including its cached thermal decay) exactly as the twin does."""
    pack, twin = build(toy_chem, series=3, parallel=2)
    healthy_q, healthy_r = twin.q_as[:], twin.r_factor[:]
    cur, dts = profile(rng, toy_chem.capacity_ah, 60)
    for k, (i, dt) in enumerate(zip(cur, dts, strict=True)):
        if k == 10:
            pack.set_bleed([True, True, False])
            twin.g_bleed = [1.0 / 33.0, 1.0 / 33.0, 0.0]
        if k == 20:
            pack.inject_internal_short(3, 0.8)
            twin.g_leak[3] = 1.0 / 0.8
            pack.inject_weak_cell(1, capacity_factor=0.5, resistance_factor=4.0)
            twin.q_as[1] = healthy_q[1] * 0.5
            twin.r_factor[1] = healthy_r[1] * 4.0
        if k == 30:
            pack.ambient_temp_c = 40.0
            twin.ambient_c = 40.0
        if k == 40:
            pack.clear_faults()
            twin.g_leak = [0.0] * twin.n_cells
            twin.q_as, twin.r_factor = healthy_q[:], healthy_r[:]
        if k == 50:
            pack.set_bleed([False, False, False])
            twin.g_bleed = [0.0, 0.0, 0.0]
        v, vt = pack.step(float(i), dt), twin.step(float(i), dt)
        assert_matches(pack, twin, v, vt, what=f"step {k}")
    v, vt = pack.step(0.0, 4000.0), twin.step(0.0, 4000.0)  # one thermal time constant
    assert_matches(pack, twin, v, vt, what="long rest")
    assert min(twin.temp_c) > 33.0  # the new ambient (40 degC) reached the cells


@pytest.mark.parametrize("chem_fixture", ["toy_chem", "lfp_chem"])
def test_soc_beyond_limits_matches_twin(chem_fixture, request):
    """Over-discharge far enough that the extrapolated OCV hits its 0 V floor, then
    over-charge past 100 %: plant and twin agree on every state and flag."""
    chem = request.getfixturevalue(chem_fixture)
    pack, twin = build(chem, series=2, parallel=2, soc=0.03)
    cap = chem.capacity_ah
    steps = [(2 * cap, 60.0)] * 10  # 2C for 10 min: through 0 %
    steps += [(cap, 1800.0)]  # a long step to about -0.8 (toy OCV floor at about -0.42)
    steps += [(0.0, 600.0), (0.5 * cap, 1.0), (-2 * cap, 3600.0)]  # rest, then back up
    steps += [(-cap, 60.0)] * 40 + [(-3 * cap, 1200.0), (0.0, 30.0)]  # past 100 %
    seen_empty = seen_full = False
    for k, (i, dt) in enumerate(steps):
        v, vt = pack.step(i, dt), twin.step(i, dt)
        assert_matches(pack, twin, v, vt, what=f"step {k}")
        seen_empty |= pack.cells_empty == pack.n_cells
        seen_full |= pack.cells_full == pack.n_cells
    assert seen_empty and seen_full
    assert np.all(pack.soc > 1.0)


@settings(max_examples=30, deadline=None)
@given(
    soc=st.floats(0.0, 1.0),
    temp_c=st.floats(-25.0, 65.0),
    parallel=st.sampled_from([1, 2, 3]),
    hysteresis=st.booleans(),
    rc_pairs=st.sampled_from([0, 1, 2]),
    bleed=st.booleans(),
    max_sub=st.sampled_from([0.3, 1.0, 3600.0]),
    steps=st.lists(
        st.tuples(st.floats(-400.0, 400.0), st.floats(1e-3, 30.0)), min_size=1, max_size=6
    ),
)
def test_random_steps_match_twin(
    toy_chem, soc, temp_c, parallel, hysteresis, rc_pairs, bleed, max_sub, steps
):
    model = ModelConfig(
        rc_pairs=rc_pairs, hysteresis=hysteresis, self_discharge=False, max_parallel_step_s=max_sub
    )
    pack, twin = build(
        toy_chem,
        series=2,
        parallel=parallel,
        soc=soc,
        temp_c=temp_c,
        model=model,
        bleed=[bleed, False],
    )
    for k, (i, dt) in enumerate(steps):
        v, vt = pack.step(i, dt), twin.step(i, dt)
        assert_matches(pack, twin, v, vt, what=f"step {k} (I={i!r}, dt={dt!r})")


# ------------------------------------------------------------------------- self-discharge
# At rest (contactors closed, I = 0, P = 1, no leak, thermal off) SOC changes only by
# self-discharge: dSOC = sd_rate * f(T) * dt, f the Arrhenius factor, which the model
# evaluates at its temperature nodes (2.5 K apart over -60..120 degC) and interpolates.


def _rest_soc_drop(chem: Chemistry, temp_c: float, dt_s: float = 86400.0) -> tuple[float, float]:
    pack = make_pack(
        chem,
        series=1,
        soc=0.5,
        temp_c=temp_c,
        model=ModelConfig(thermal=False, self_discharge=True),
    )
    sd_per_s = chem.self_discharge_perc_per_month / 100.0 / (30.0 * 86400.0)
    before = float(pack.soc[0, 0])
    pack.step(0.0, dt_s)
    assert pack.cell_current_a[0, 0] == 0.0
    expected = sd_per_s * arrhenius(temp_c, chem.self_discharge_activation_j_per_mol) * dt_s
    return before - float(pack.soc[0, 0]), expected


@pytest.mark.parametrize("temp_c", [-60.0, -20.0, -10.0, 0.0, 25.0, 45.0, 55.0, 90.0, 120.0])
def test_self_discharge_at_temperature_nodes_is_arrhenius(lfp_chem, temp_c):
    got, expected = _rest_soc_drop(lfp_chem, temp_c)
    assert expected > 0
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize("temp_c", [-58.75, -18.75, 1.25, 26.25, 71.25, 118.75])
def test_self_discharge_between_nodes_stays_within_the_chord_bound(lfp_chem, temp_c):
    """Linear between nodes 2.5 K apart: the chord of the convex Arrhenius curve lies above
    it by at most (dT^2 / 8) (d ln f / dT)^2, with d ln f / dT = Ea / (R T^2): 1.3 % at
    -60 degC, 0.4 % at 25 degC for 50 kJ/mol."""
    got, expected = _rest_soc_drop(lfp_chem, temp_c)
    slope = lfp_chem.self_discharge_activation_j_per_mol / (8.314462618 * (temp_c + 273.15) ** 2)
    bound = 2.5**2 / 8.0 * slope**2
    assert expected * (1 - 1e-9) <= got <= expected * (1.0 + 1.05 * bound)
