"""Passive balancing: the right groups bleed, no more than the module allows, and a SOC
spread closes in the time charge / current says."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NO_SPREAD, make_pack

from bms import ConfigError
from bms.config import BalancingStrategyConfig, ModelConfig, SocConfig
from bms.firmware.balancing import make_balancer
from bms.firmware.kernels import select_bleeders
from bms.firmware.soc import CellModel, make_estimator


def twin_select(demand, priority, module_groups, max_per_module):
    mask = [False] * len(demand)
    for start in range(0, len(demand), module_groups):
        idx = [g for g in range(start, min(start + module_groups, len(demand))) if demand[g]]
        idx.sort(key=lambda g: (-priority[g], g))
        for g in idx[:max_per_module]:
            mask[g] = True
    return mask


def test_bleeder_selection_matches_twin(rng) -> None:
    for _ in range(300):
        n = int(rng.integers(1, 60))
        demand = rng.random(n) < 0.6
        priority = rng.random(n)
        mg, mx = int(rng.integers(1, 16)), int(rng.integers(1, 8))
        mask = np.zeros(n, dtype=np.bool_)
        select_bleeders(demand, priority, mg, mx, mask)
        assert mask.tolist() == twin_select(demand, priority, mg, mx)


def _setup(socs, strategy="soc", **bal_kw):
    n = len(socs)
    pack = make_pack(
        series=n, soc=0.5, spread=NO_SPREAD, closed=False, model=ModelConfig(self_discharge=False)
    )
    pack.set_soc(np.asarray(socs))
    model = CellModel(pack.chemistry, 1)
    est = make_estimator(SocConfig(), model, pack.sensors.temp_sensor_cells, n, name="coulomb")
    est.initialise(pack.sensors.measure(), pack.soc[:, 0].copy())  # from persistent memory
    bal = make_balancer(
        BalancingStrategyConfig(strategy=strategy, **bal_kw),
        n,
        pack.config.balancing.resistor_ohm,
        model.capacity_as,
    )
    return pack, est, bal


def _run(pack, est, bal, dt, max_steps):
    """The balancing task every dt: switches open for the measurement pause."""
    pause = bal.cfg.measure_pause_fraction
    v_bleeding = []
    m = pack.sensors.measure()
    idle = 0
    for k in range(max_steps):
        mask = bal.update(m, est.soc, dt)
        est.account_bleed(bal.bled_as)
        idle = 0 if mask.any() else idle + 1
        if idle == 10:  # done: ten balancing periods without a switch closed
            return (k - 9) * dt, v_bleeding
        pack.set_bleed(mask)
        pack.rest(dt * (1.0 - pause))
        if mask.any():
            v_bleeding.append(pack.group_voltage_v[mask].mean())
        pack.set_bleed(np.zeros(pack.n_series, dtype=bool))
        pack.rest(dt * pause)
        m = pack.sensors.measure()
        est.update(m, dt)
    raise AssertionError("balancing did not finish")


def test_soc_balancing_closes_a_2_percent_spread_in_dsoc_q_over_i() -> None:
    socs = [0.80] * 12
    socs[5] = 0.82
    pack, est, bal = _setup(socs)
    r = pack.config.balancing.resistor_ohm
    t_s, v = _run(pack, est, bal, dt=60.0, max_steps=5000)
    i_mean = float(np.mean(v)) / r * (1.0 - bal.cfg.measure_pause_fraction)
    t_analytic = 0.02 * pack.capacity_ah[5, 0] * 3600.0 / i_mean
    assert t_s == pytest.approx(t_analytic, rel=0.02)
    spread = pack.soc.max() - pack.soc.min()
    assert spread < 0.001  # from 0.02
    assert np.all(pack.soc[[0, 11], 0] == pytest.approx(0.80))  # the others never bled


def test_voltage_balancing_bleeds_the_high_groups_until_within_threshold() -> None:
    socs = [0.97] * 6
    socs[2] = 0.99  # near full the LFP OCV is steep: tens of mV apart
    # the default threshold (10 mV) stays above the channels' offset and gain errors
    pack, est, bal = _setup(socs, strategy="voltage")
    v0 = pack.sensors.cell_voltages()
    assert v0[2] - v0.min() > 0.010
    mask = bal.update(pack.sensors.measure(), est.soc, 10.0)
    assert mask.tolist() == [False, False, True, False, False, False]
    _run(pack, est, bal, dt=10.0, max_steps=20_000)
    v = np.mean([pack.sensors.cell_voltages() for _ in range(50)], axis=0)  # as it sees it
    assert v[2] - v.min() < 0.010  # inside the hysteresis band: no reason to start again
    assert 0.97 < pack.soc[2, 0] < 0.985


def test_no_more_bleeders_per_module_than_allowed_and_the_largest_first() -> None:
    socs = [0.80] * 24
    for g in range(10):
        socs[g] = 0.81 + 0.001 * g
    pack, est, bal = _setup(socs, module_groups=12, max_bleeders_per_module=6)
    mask = bal.update(pack.sensors.measure(), est.soc, 1.0)
    assert mask[:12].sum() == 6
    assert mask[4:10].all() and not mask[:4].any()  # the six fullest
    assert not mask[12:].any()


def test_no_balancing_when_cells_are_low_or_hot() -> None:
    socs = [0.80] * 4
    socs[1] = 0.85
    pack, est, bal = _setup(socs, min_cell_voltage_v=3.6)
    assert not bal.update(pack.sensors.measure(), est.soc, 1.0).any()
    pack, est, bal = _setup(socs, max_temp_c=20.0)  # the pack is at 25 degC
    assert not bal.update(pack.sensors.measure(), est.soc, 1.0).any()
    pack, est, bal = _setup(socs)
    assert bal.update(pack.sensors.measure(), est.soc, 1.0)[1]


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'active'; valid: off, voltage, soc"):
        BalancingStrategyConfig(strategy="active")
