"""Chemistry files: the built-in sets load, and every bad value gives one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from chemdata import toy

from bms import Chemistry, ConfigError, available, load_chemistry
from bms.plant.tables import KernelTables, uniform_grid


@pytest.mark.parametrize("name", ["lfp_280ah", "nmc_94ah"])
def test_built_in_sets_load_with_sources_and_plausible_values(name: str) -> None:
    chem = load_chemistry(name)
    assert chem.name == name
    assert chem.sources, "every set names its public sources"
    ocv = chem.ocv_v(0.5, 25.0)
    assert chem.min_voltage_v < ocv < chem.max_voltage_v
    gap = chem.tables["ocv_charge_v"] - chem.tables["ocv_discharge_v"]
    assert np.all(gap >= 0)
    assert chem.rc_pairs == 2


def test_lfp_set_is_a_280ah_cell_with_lfp_hysteresis_of_5_to_25_mv() -> None:
    chem = load_chemistry("lfp_280ah")
    assert 250 <= chem.capacity_ah <= 300
    assert chem.nominal_voltage_v == pytest.approx(3.2)
    j = int(np.flatnonzero(chem.temp_c == 25.0)[0])
    mid = (chem.soc >= 0.1) & (chem.soc <= 0.9)
    gap_mv = 1e3 * (chem.tables["ocv_charge_v"] - chem.tables["ocv_discharge_v"])[mid, j]
    assert gap_mv.min() >= 5.0 and gap_mv.max() <= 25.0
    # the LFP plateau: flat between 30 and 90 % SOC
    assert chem.ocv_v(0.9, 25.0) - chem.ocv_v(0.3, 25.0) < 0.1


def test_available_lists_the_built_in_sets() -> None:
    assert {"lfp_280ah", "nmc_94ah"} <= set(available())


def test_unknown_chemistry_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown chemistry 'lfpp'.*lfp_280ah") as exc:
        load_chemistry("lfpp")
    assert "\n" not in str(exc.value)


def test_user_file_loads_by_path(tmp_path) -> None:
    src = load_chemistry("lfp_280ah").source
    text = (__import__("pathlib").Path(__file__).parents[2] / src).read_text()
    f = tmp_path / "my_cell.toml"
    f.write_text(text.replace("capacity_ah = 280.0", "capacity_ah = 304.0", 1))
    chem = load_chemistry(f)
    assert chem.capacity_ah == 304.0
    assert chem.source == str(f)


def test_missing_file_says_which(tmp_path) -> None:
    with pytest.raises(ConfigError, match="chemistry file not found"):
        load_chemistry(tmp_path / "nope.toml")


def test_invalid_toml_names_the_file(tmp_path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[cell\ncapacity_ah = 1")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_chemistry(f)


BAD = [
    ({"cell__capacity_ah": -280.0}, r"\[cell\] capacity_ah: must be > 0, got -280"),
    ({"cell__capacity_ah": "280"}, r"\[cell\] capacity_ah: must be a number"),
    ({"cell__coulombic_efficiency": 1.2}, r"\[cell\] coulombic_efficiency: must be <= 1"),
    ({"tables__soc": [0.0, 0.1, 0.5, 0.9, 1.1]}, r"\[tables\] soc: must run from 0.0 to 1.0"),
    ({"tables__soc": [0.0, 0.5, 0.1, 0.9, 1.0]}, r"\[tables\] soc: must be strictly ascending"),
    ({"tables__r0_ohm": [[1e-3] * 3] * 4}, r"\[tables\] r0_ohm: shape must be"),
    ({"tables__tau1_s": [[0.0] * 3] * 5}, r"\[tables\] tau1_s: values must be > 0"),
    ({"capacity_vs_temp__factor": [1.0, 1.0]}, r"\[capacity_vs_temp\] factor: needs 3 values"),
    ({"hysteresis__gamma": float("nan")}, r"\[hysteresis\] gamma: must be finite"),
    ({"meta__sources": []}, r"\[meta\] sources: every set names its public sources"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_value_gives_one_line_naming_file_section_and_field(override, message) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        Chemistry.from_dict(toy(**override), source="cells/toy.toml")
    text = str(exc.value)
    assert text.startswith("cells/toy.toml: [")
    assert "\n" not in text


def test_ocv_that_falls_with_soc_is_rejected_with_the_place() -> None:
    d = toy()
    d["tables"]["ocv_discharge_v"][2][1] = 3.10  # below the 10 % point at 25 degC
    with pytest.raises(
        ConfigError,
        match=r"ocv_discharge_v: OCV must rise strictly with soc; "
        r"at temp_c=25 it goes 3.2050 -> 3.1000 V",
    ):
        Chemistry.from_dict(d, source="toy.toml")


def test_charge_branch_below_discharge_branch_is_rejected() -> None:
    d = toy()
    d["tables"]["ocv_charge_v"], d["tables"]["ocv_discharge_v"] = (
        d["tables"]["ocv_discharge_v"],
        d["tables"]["ocv_charge_v"],
    )
    with pytest.raises(ConfigError, match="charge branch below discharge branch"):
        Chemistry.from_dict(d)


def test_missing_section_is_named() -> None:
    d = toy()
    del d["thermal"]
    with pytest.raises(ConfigError, match=r"\[thermal\]: section missing"):
        Chemistry.from_dict(d)


def test_rc2_needs_both_tables() -> None:
    d = toy()
    del d["tables"]["tau2_s"]
    with pytest.raises(ConfigError, match="r2_ohm and tau2_s come together"):
        Chemistry.from_dict(d)


def test_one_rc_set_is_valid_and_reports_one_pair() -> None:
    d = toy()
    del d["tables"]["tau2_s"], d["tables"]["r2_ohm"]
    assert Chemistry.from_dict(d).rc_pairs == 1


def test_uniform_grid_keeps_every_breakpoint_when_a_round_step_fits() -> None:
    pts = np.array([0.0, 0.01, 0.03, 0.1, 0.5, 0.97, 1.0])
    grid = uniform_grid(pts, (0.05, 0.01, 0.005))
    assert np.allclose(np.diff(grid), 0.01)
    for p in pts:
        assert np.min(np.abs(grid - p)) < 1e-12


def test_resampled_tables_interpolate_exactly_like_the_file_grid(rng) -> None:
    """Piecewise-bilinear on the uniform grid == piecewise-bilinear on the file's grid."""
    chem = load_chemistry("lfp_280ah")
    kt = KernelTables(chem)
    r0 = kt.resample(chem.tables["r0_ohm"])
    for soc, temp in rng.uniform([0.0, -10.0], [1.0, 45.0], size=(200, 2)):
        fi = (soc - kt.soc[0]) / (kt.soc[1] - kt.soc[0])
        fj = (temp - kt.temp_c[0]) / (kt.temp_c[1] - kt.temp_c[0])
        i, j = min(int(fi), kt.soc.size - 2), min(int(fj), kt.temp_c.size - 2)
        wi, wj = fi - i, fj - j
        fine = (
            (1 - wi) * (1 - wj) * r0[i, j]
            + wi * (1 - wj) * r0[i + 1, j]
            + (1 - wi) * wj * r0[i, j + 1]
            + wi * wj * r0[i + 1, j + 1]
        )
        ref = _bilinear(chem.soc, chem.temp_c, chem.tables["r0_ohm"], soc, temp)
        assert fine == pytest.approx(ref, rel=1e-12)


def _bilinear(xs, ys, tab, x, y):
    i = min(int(np.searchsorted(xs, x, side="right")) - 1, xs.size - 2)
    j = min(int(np.searchsorted(ys, y, side="right")) - 1, ys.size - 2)
    wx = (x - xs[i]) / (xs[i + 1] - xs[i])
    wy = (y - ys[j]) / (ys[j + 1] - ys[j])
    return (
        (1 - wx) * (1 - wy) * tab[i, j]
        + wx * (1 - wy) * tab[i + 1, j]
        + (1 - wx) * wy * tab[i, j + 1]
        + wx * wy * tab[i + 1, j + 1]
    )
