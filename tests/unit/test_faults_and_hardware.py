"""Injected cell faults, balancing bleed and contactors act on the plant as expected."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_pack

from bms import InputError
from bms.config import ModelConfig
from bms.plant import layout as L
from bms.plant.kernels import bleed_kernel

ISOTHERMAL = ModelConfig(thermal=False, self_discharge=False)


def test_weak_cell_loses_soc_faster_in_proportion_to_its_capacity() -> None:
    pack = make_pack(series=4, soc=0.8, model=ISOTHERMAL)
    pack.inject_weak_cell(2, capacity_factor=0.5, resistance_factor=3.0)
    assert pack.capacity_ah[2, 0] == pytest.approx(0.5 * pack.capacity_ah[0, 0])
    pack.run(np.full(3600, 100.0), 1.0)  # 100 Ah
    drop = 0.8 - pack.soc[:, 0]
    assert drop[2] == pytest.approx(2.0 * drop[0], rel=1e-9)
    assert pack.group_voltage_v[2] < pack.group_voltage_v[0] - 0.01


def test_internal_short_drains_the_cell_at_rest_at_v_over_r() -> None:
    pack = make_pack(series=3, soc=0.5, model=ISOTHERMAL, closed=False)
    pack.inject_internal_short(1, resistance_ohm=10.0)
    v = pack.group_voltage_v[1]
    pack.rest(3600.0)
    q_as = pack.capacity_ah[1, 0] * 3600.0
    assert 0.5 - pack.soc[1, 0] == pytest.approx(v / 10.0 * 3600.0 / q_as, rel=0.01)
    assert pack.soc[0, 0] == pytest.approx(0.5, abs=1e-12)
    assert pack.heat_w[1, 0] == pytest.approx(v * v / 10.0, rel=0.01)
    assert pack.active_faults() == ["internal short cell 1: 10 ohm"]


def test_clear_faults_restores_the_healthy_cell() -> None:
    pack = make_pack(series=3)
    cap = pack.capacity_ah.copy()
    pack.inject_weak_cell(0, 0.6, 2.0)
    pack.inject_internal_short(1, 1.0)
    pack.contactors.weld("main_pos")
    assert len(pack.active_faults()) == 3
    pack.clear_faults()
    assert pack.active_faults() == []
    np.testing.assert_array_equal(pack.capacity_ah, cap)


@pytest.mark.parametrize("bad", [-1, 3])
def test_fault_on_a_cell_outside_the_pack_is_rejected(bad: int) -> None:
    pack = make_pack(series=3)
    with pytest.raises(InputError, match=rf"cell: index {bad} outside the pack \(0..2\)"):
        pack.inject_weak_cell(bad)


def test_balancing_bleed_draws_v_over_r_from_its_group_only() -> None:
    pack = make_pack(series=4, soc=0.6, model=ISOTHERMAL, closed=False)
    pack.set_bleed([False, True, False, False])
    v = pack.group_voltage_v[1]
    pack.rest(600.0)
    r = pack.config.balancing.resistor_ohm
    assert pack.bleed_current_a[1] == pytest.approx(v / r, rel=1e-3)
    assert pack.bleed_current_a[0] == 0.0
    q_as = pack.capacity_ah[1, 0] * 3600.0
    assert 0.6 - pack.soc[1, 0] == pytest.approx(v / r * 600.0 / q_as, rel=1e-3)
    assert pack.soc[0, 0] == pytest.approx(0.6, abs=1e-12)


def test_bleed_mask_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(InputError, match="needs 4 values"):
        make_pack(series=4).set_bleed([True, False])


def test_open_contactors_carry_no_current() -> None:
    pack = make_pack(series=2, soc=0.5, model=ISOTHERMAL, closed=False)
    pack.step(300.0, 10.0)
    assert pack.current_a == 0.0
    assert np.all(pack.cell_current_a == 0.0)
    assert pack.soc[0, 0] == pytest.approx(0.5, abs=1e-15)


def test_welded_contactor_conducts_although_commanded_open() -> None:
    pack = make_pack(series=2, closed=False)
    pack.contactors.weld("main_pos")
    pack.contactors.command(main_neg=True)
    assert pack.contactors.actual["main_pos"] and not pack.contactors.commanded["main_pos"]
    pack.step(100.0, 1.0)
    assert pack.current_a == 100.0


def test_unknown_contactor_name_is_rejected() -> None:
    with pytest.raises(InputError, match="contactor 'main' unknown; valid: main_pos, main_neg"):
        make_pack(series=1).contactors.command(main=True)


def test_precharge_follows_the_rc_charge_of_the_dc_link() -> None:
    pack = make_pack(series=100, closed=False)
    c = pack.contactors
    c.command(main_neg=True, precharge=True)
    tau = c.cfg.precharge_resistor_ohm * c.cfg.link_capacitance_f
    for _ in range(20):
        pack.step(0.0, tau / 20)
    assert c.bus_voltage_v == pytest.approx(pack.voltage_v * (1 - np.exp(-1.0)), rel=1e-3)
    assert pack.current_a > 0.0  # the link's charge comes out of the pack
    c.command(main_pos=True, precharge=False)
    pack.step(50.0, 0.1)
    assert c.bus_voltage_v == pack.voltage_v
    c.open_all()
    pack.step(0.0, c.cfg.link_discharge_ohm * c.cfg.link_capacitance_f)
    assert c.bus_voltage_v == pytest.approx(pack.voltage_v * np.exp(-1.0), rel=0.01)


def test_ambient_temperature_drives_the_cells_toward_it() -> None:
    pack = make_pack(series=2, temp_c=25.0, closed=False)
    pack.ambient_temp_c = 5.0
    c = pack.chemistry
    tau = c.thermal_mass_j_per_k / c.heat_transfer_w_per_k
    pack.rest(tau)
    assert pack.temp_c[0, 0] == pytest.approx(5.0 + 20.0 * np.exp(-1.0), rel=1e-9)
    with pytest.raises(InputError, match="ambient_temp_c"):
        pack.ambient_temp_c = float("nan")


def test_bleed_kernel_sets_switches_and_conductances(rng) -> None:
    """The kernel behind set_bleed against numpy: the mask and V/R only where closed."""
    for _ in range(50):
        n = int(rng.integers(1, 30))
        on = rng.random(n) < 0.5
        bleed_on = rng.random(n) < 0.5
        g = rng.uniform(0, 1, (L.NG, n))
        want = g.copy()
        want[L.G_BLEED_G] = np.where(on, 1 / 33.0, 0.0)
        bleed_kernel(on, 1 / 33.0, bleed_on, g)
        assert bleed_on.tolist() == on.tolist()
        np.testing.assert_array_equal(g, want)
