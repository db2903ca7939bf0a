"""``bms-emu run --profile``: a CSV file and the depot charge drive the pack as they say,
seen in the CAN log decoded with cantools."""

from __future__ import annotations

import json
from pathlib import Path

import can
import cantools
import numpy as np
import pytest

from bms.canbus.binding import DBC_DIR
from bms.cli.main import main


def _db() -> cantools.database.can.Database:
    db = cantools.database.can.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    return db


def _series(log: Path, message: str, signal: str) -> tuple[np.ndarray, np.ndarray]:
    db = _db()
    msg = db.get_message_by_name(message)
    t, v = [], []
    for m in can.LogReader(str(log)):
        if m.arbitration_id == msg.frame_id:
            t.append(m.timestamp)
            v.append(float(msg.decode(m.data)[signal]))
    return np.array(t), np.array(v)


def test_a_csv_profile_drives_the_pack(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "route.csv"
    csv.write_text("time_s,current_a\n0,120\n6,40\n9,0\n12,0\n")
    log, summary = tmp_path / "run.log", tmp_path / "s.json"
    argv = ["run", "--profile", str(csv), "--duration", "14", "--log", str(log)]
    assert main([*argv, "--summary", str(summary), "--quiet"]) == 0
    assert f"mission {csv.name}" in capsys.readouterr().err
    t, i = _series(log, "PDU_Current", "PackCurrent")
    # the route starts with the drive phase, and the vehicle draws its current once the
    # contactors are closed (some 0.3 s later); the steps are held, the shunt reads them
    # with its small gain error
    t1 = t[np.argmax(np.abs(i - 120.0) < 2.0)]
    t2 = t[np.argmax((t > t1) & (np.abs(i - 40.0) < 1.0))]
    t3 = t[np.argmax((t > t2) & (np.abs(i) < 0.5))]
    assert 0.5 < t1 < 3.0
    assert 5.0 < t2 - t1 < 6.05
    assert t3 - t2 == pytest.approx(3.0, abs=0.15)
    assert np.all(np.abs(i[(t > t1 + 0.2) & (t < t2 - 0.2)] - 120.0) < 2.0)
    assert np.all(np.abs(i[t > t3 + 0.2]) < 0.5)
    # the mission ends with the route (12 s after its start), before --duration
    assert json.loads(summary.read_text())["simulated_s"] == pytest.approx(t1 + 11.5, abs=0.6)


def test_the_depot_charge_charges_through_the_charger(tmp_path: Path, capsys) -> None:
    log = tmp_path / "run.log"
    argv = ["run", "--profile", "depot-charge", "--duration", "90", "--log", str(log)]
    assert main([*argv, "--quiet"]) == 0
    assert "mission depot-charge" in capsys.readouterr().err
    t, i = _series(log, "CHG_Status", "OutputCurrent")
    assert i[t > 60.0].min() > 50.0  # the charger delivers, at the BMS's request
    t, i = _series(log, "PDU_Current", "PackCurrent")
    assert i[t > 60.0].max() < -50.0  # into the pack (+ = discharge)
