"""Current limits: derating over temperature and SOC, taper near the voltage limits."""

from __future__ import annotations

import numpy as np
import pytest

from bms import ConfigError
from bms.config import CurrentLimitConfig
from bms.firmware.limits import CurrentLimits
from bms.plant import Measurement


def meas(temps=(25.0, 25.0), cells=(3.30, 3.30)) -> Measurement:
    v = np.asarray(cells, dtype=float)
    return Measurement(
        0.0, v, np.asarray(temps, dtype=float), 0.0, float(v.sum()), float(v.sum()), {}
    )


def test_full_limits_in_the_comfort_zone() -> None:
    lim = CurrentLimits(CurrentLimitConfig(), 1).update(meas(), np.array([0.5, 0.6]))
    assert (lim.charge_a, lim.discharge_a) == (280.0, 560.0)


def test_charge_derates_with_the_coldest_and_the_hottest_sensor() -> None:
    cl = CurrentLimits(CurrentLimitConfig(), 1)
    soc = np.array([0.5])
    assert cl.update(meas(temps=(5.0, 25.0)), soc).charge_a == pytest.approx(84.0)  # 0..10 C
    assert cl.update(meas(temps=(25.0, 50.0)), soc).charge_a == pytest.approx(140.0)
    assert cl.update(meas(temps=(-5.0, 25.0)), soc).charge_a == pytest.approx(14.0)
    assert cl.update(meas(temps=(-12.0, 25.0)), soc).charge_a == 0.0


def test_soc_derating_uses_the_fullest_group_for_charge_and_emptiest_for_discharge() -> None:
    cl = CurrentLimits(CurrentLimitConfig(), 1)
    lim = cl.update(meas(), np.array([0.1, 0.975]))
    assert lim.charge_a == pytest.approx(70.0)  # halfway between 0.95 (140 A) and 1.0 (0 A)
    assert lim.discharge_a == pytest.approx(140.0 + (560.0 - 140.0) * (0.05 / 0.15))


def test_taper_to_zero_at_the_voltage_limits() -> None:
    cl = CurrentLimits(CurrentLimitConfig(), 1)
    soc = np.array([0.5])
    assert cl.update(meas(cells=(3.30, 3.55)), soc).charge_a == pytest.approx(140.0)  # halfway
    assert cl.update(meas(cells=(3.30, 3.61)), soc).charge_a == 0.0
    assert cl.update(meas(cells=(2.70, 3.30)), soc).discharge_a == pytest.approx(280.0)
    assert cl.update(meas(cells=(2.40, 3.30)), soc).discharge_a == 0.0


def test_pack_limits_scale_with_cells_in_parallel() -> None:
    lim = CurrentLimits(CurrentLimitConfig(), 13).update(meas(), np.array([0.5]))
    assert lim.charge_a == pytest.approx(13 * 280.0)


def test_bad_tables_are_rejected_with_the_field() -> None:
    with pytest.raises(
        ConfigError,
        match=r"\[firmware.limits\] charge_vs_temp_a: needs as "
        r"many values as charge_temp_c",
    ):
        CurrentLimitConfig(charge_vs_temp_a=(1.0, 2.0))
    with pytest.raises(ConfigError, match=r"charge_soc: must be strictly ascending"):
        CurrentLimitConfig(charge_soc=(0.0, 0.9, 0.8, 1.0))
    with pytest.raises(ConfigError, match=r"discharge_taper_v: needs start > end"):
        CurrentLimitConfig(discharge_taper_v=(2.5, 2.9))
