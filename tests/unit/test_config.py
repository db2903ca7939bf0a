"""Configuration: TOML and Python build the same thing; bad fields stop at start-up."""

from __future__ import annotations

import pytest

from bms import Config, ConfigError, Pack, load_config, preset, presets
from bms.config import ModelConfig, PackConfig, SensorConfig, TemperatureSensorConfig


def test_defaults_are_the_bus_pack() -> None:
    cfg = Config()
    assert (cfg.pack.series, cfg.pack.parallel, cfg.pack.chemistry) == (200, 1, "lfp_280ah")
    assert preset("bus") == cfg


def test_presets_include_a_container_of_more_than_5000_cells() -> None:
    assert {"bus", "container", "single_cell"} <= set(presets())
    assert preset("container").pack.n_cells >= 5000


def test_single_cell_preset_is_the_plain_equivalent_circuit() -> None:
    cfg = preset("single_cell")
    assert cfg.pack.n_cells == 1
    assert cfg.model == ModelConfig(
        rc_pairs=1, hysteresis=False, thermal=False, self_discharge=False
    )


def test_toml_file_overrides_only_what_it_names(tmp_path) -> None:
    f = tmp_path / "pack.toml"
    f.write_text("[pack]\nseries = 16\nparallel = 3\n\n[sensors.current]\noffset_a = 0.2\n")
    cfg = load_config(f)
    assert (cfg.pack.series, cfg.pack.parallel) == (16, 3)
    assert cfg.sensors.current.offset_a == 0.2
    assert cfg.sensors.current.gain_error == Config().sensors.current.gain_error
    assert cfg.model == ModelConfig()


def test_chemistry_path_in_a_config_file_is_relative_to_that_file(tmp_path) -> None:
    from bms import load_chemistry

    src = load_chemistry("lfp_280ah").source
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "mine.toml").write_text(
        (__import__("pathlib").Path(__file__).parents[2] / src).read_text()
    )
    f = tmp_path / "pack.toml"
    f.write_text('[pack]\nchemistry = "cells/mine.toml"\nseries = 2\n')
    pack = Pack(load_config(f))
    assert pack.chemistry.source == str(tmp_path / "cells" / "mine.toml")


BAD_FILES = [
    ("[pack]\ninitial_soc = 1.2\n", r"\[pack\] initial_soc: must be within \[0, 1\], got 1.2"),
    ("[pack]\ninitial_soc = -0.1\n", r"\[pack\] initial_soc: must be within \[0, 1\], got -0.1"),
    ("[pack]\nseries = 0\n", r"\[pack\] series: must be within \[1, 100000\], got 0"),
    ("[pack]\nseries = 2.5\n", r"\[pack\] series: must be an integer, got 2.5"),
    ("[pack]\nserie = 20\n", r"\[pack\]: unknown field 'serie'; valid: chemistry, series"),
    ("[packs]\nseries = 20\n", r"unknown field 'packs'; valid: pack, spread"),
    ("[model]\nhysteresis = 1\n", r"\[model\] hysteresis: must be true or false, got 1"),
    ("[balancing]\nresistor_ohm = -33\n", r"\[balancing\] resistor_ohm: must be > 0, got -33"),
    (
        "[sensors.temperature]\nplacement = 'centre'\n",
        r"\[sensors.temperature\] placement: must be first, middle or last, got 'centre'",
    ),
    (
        "[sensors.temperature]\ncells = [0, 999]\n",
        r"\[sensors.temperature\] cells: cell index 999 outside the pack \(0..199\)",
    ),
    ("[pack]\nambient_temp_c = nan\n", r"\[pack\] ambient_temp_c: must be a finite number"),
    ("pack = 3\n", r"\[pack\]: must be a table, got int"),
    ("[pack\n", r"not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_config_file_gives_one_line_naming_file_and_field(tmp_path, text, message) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(f)
    assert str(exc.value).startswith(f"{f}: ")
    assert "\n" not in str(exc.value)


def test_bad_value_from_python_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^\[pack\] initial_soc: must be within \[0, 1\]"):
        PackConfig(initial_soc=1.5)
    with pytest.raises(ConfigError, match=r"\[model\] rc_pairs: must be within \[0, 2\], got 3"):
        ModelConfig(rc_pairs=3)


def test_unknown_chemistry_stops_pack_creation_with_the_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown chemistry 'lto'.*lfp_280ah.*nmc_94ah"):
        Pack(Config(pack=PackConfig(chemistry="lto")))


def test_missing_config_file_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "none.toml")


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'bike'; built-in: bus, container"):
        preset("bike")


def test_temperature_sensor_cells_given_explicitly_are_used() -> None:
    cfg = Config(
        pack=PackConfig(series=8),
        sensors=SensorConfig(temperature=TemperatureSensorConfig(cells=(0, 7))),
    )
    assert Pack(cfg).sensors.temp_sensor_cells.tolist() == [0, 7]
