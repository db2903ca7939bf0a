"""``bms-emu plant`` end to end: the built-in scenario, profiles, JSON summary, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bms.cli.main import main


def test_make_run_default_city_bus_day_runs_and_reports(tmp_path, capsys) -> None:
    out_json = tmp_path / "summary.json"
    assert main(["plant", "--duration", "1800", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "city-bus-day on 200S1P lfp_280ah" in text
    assert "depot charge" in text
    summary = json.loads(out_json.read_text())
    assert summary["pack"] == "200S1P lfp_280ah"
    assert summary["discharged_ah"] > 0 and summary["charged_ah"] > summary["discharged_ah"]
    mean_start, mean_end = summary["soc_start"][0], summary["soc_end"][0]
    assert mean_end > mean_start  # the depot charge tops the pack up after a short drive
    assert summary["cells_empty"] == 0 and summary["cells_full"] == 0
    assert summary["speed_factor"] > 1.0


def test_constant_profile_moves_soc_by_charge_over_capacity(tmp_path) -> None:
    out_json = tmp_path / "s.json"
    assert (
        main(
            [
                "plant",
                "--profile",
                "constant",
                "--current",
                "140",
                "--duration",
                "3600",
                "--preset",
                "single_cell",
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    s = json.loads(out_json.read_text())
    assert s["soc_start"][0] - s["soc_end"][0] == pytest.approx(140.0 / 280.0, rel=1e-3)


def test_csv_profile_from_a_file(tmp_path, capsys) -> None:
    f = tmp_path / "cycle.csv"
    f.write_text("time_s,current_a\n0,100\n60,-50\n120,0\n")
    assert main(["plant", "--profile", str(f), "--preset", "single_cell"]) == 0
    assert "cycle.csv" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plant", "--preset", "tram"], "error: preset: unknown preset 'tram'; built-in: bus"),
        (["plant", "--profile", "missing.csv"], "error: profile file not found: missing.csv"),
        (
            ["plant", "--profile", "constant", "--dt", "-1"],
            "error: dt_s: must be a finite number > 0",
        ),
    ],
)
def test_bad_input_prints_one_error_line_and_exits_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_bad_config_file_names_file_and_field(tmp_path, capsys) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[pack]\ninitial_soc = 7\n")
    assert main(["plant", "--config", str(f)]) == 2
    assert capsys.readouterr().err == (
        f"error: {f}: [pack] initial_soc: must be within [0, 1], got 7\n"
    )


def test_console_script_runs_in_a_fresh_process() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bms.cli.main",
            "plant",
            "--preset",
            "single_cell",
            "--profile",
            "constant",
            "--duration",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "constant 140 A on 1S1P lfp_280ah" in proc.stdout
