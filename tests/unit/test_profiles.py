"""Current profiles: built-in duty cycles and user CSV files."""

from __future__ import annotations

import numpy as np
import pytest

from bms import InputError
from bms.sim.profiles import city_bus_drive, constant, load_csv


def test_city_bus_drive_has_traction_regeneration_and_layovers() -> None:
    prof = city_bus_drive(3 * 3600.0, 0.1, capacity_a=280.0, seed=1)
    assert prof.size == 108_000
    assert prof.max() <= 1.0 * 280.0 + 1e-9
    assert prof.min() < -0.2 * 280.0  # regenerative braking charges
    assert 0.05 * 280 < prof.mean() < 0.2 * 280  # about 0.1C on average
    layover = prof[36_000 : 36_000 + 6_000]  # the first layover starts after 1 h
    assert np.allclose(layover, 0.02 * 280.0)


def test_city_bus_drive_is_reproducible_from_its_seed() -> None:
    a = city_bus_drive(600.0, 0.1, 280.0, seed=7)
    np.testing.assert_array_equal(a, city_bus_drive(600.0, 0.1, 280.0, seed=7))
    assert not np.array_equal(a, city_bus_drive(600.0, 0.1, 280.0, seed=8))


def test_constant_profile_and_bad_arguments() -> None:
    assert constant(10.0, 0.5, 12.0).tolist() == [12.0] * 20
    with pytest.raises(InputError, match="current_a: must be a finite number"):
        constant(10.0, 0.5, float("inf"))
    with pytest.raises(InputError, match="dt_s"):
        constant(10.0, 0.0, 1.0)
    with pytest.raises(InputError, match="duration_s"):
        constant(0.01, 0.5, 1.0)


def test_csv_profile_is_held_between_samples(tmp_path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("# a comment\ntime_s,current_a\n0,10\n1.0,-20\n2.5,0\n")
    prof = load_csv(f, 0.5)
    assert prof.tolist() == [10.0, 10.0, -20.0, -20.0, -20.0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("t,i\n0,1\n", "first line must be the header 'time_s,current_a'"),
        ("time_s,current_a\n0,1\n1,abc\n", r"p.csv:3: not a number"),
        ("time_s,current_a\n0,1\n1,nan\n", r"p.csv:3: values must be finite"),
        ("time_s,current_a\n0,1\n0,2\n", r"p.csv:3: time_s must increase"),
        ("time_s,current_a\n0,1\n1\n", r"p.csv:3: needs two values"),
        ("time_s,current_a\n0,1\n", "needs at least two samples"),
    ],
)
def test_bad_csv_names_the_file_and_line(tmp_path, body: str, message: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(body)
    with pytest.raises(InputError, match=message):
        load_csv(f, 0.1)


def test_a_current_without_the_constant_profile_is_refused() -> None:
    from bms.sim.mission import make_mission

    with pytest.raises(InputError, match="--current sets the current of --profile constant"):
        make_mission("city-bus-day", 280.0, current_a=5.0)
    with pytest.raises(InputError, match="needs --current"):
        make_mission("constant", 280.0)
    m = make_mission("constant", 280.0, duration_s=10.0, current_a=-5.0)
    assert np.all(m.phases[0].profile == -5.0)


def test_summaries_give_short_runs_in_seconds_and_long_ones_in_hours() -> None:
    from bms.cli import sim_time

    assert sim_time(20.0) == "20.0 s"
    assert sim_time(90.0) == "1.5 min"
    assert sim_time(7.13 * 3600) == "7.13 h"
