"""Receive timeouts follow the DBC periods of a user's matrix: a current frame every
100 ms and a contactor command every 200 ms keep the closed loop running, and a
silence longer than the derived timeout is still caught."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from bms.canbus.nodes import RX_TIMEOUT_EVENT_S, RX_TIMEOUT_PERIODS, rx_timeout_s
from bms.config import Config, ContactorControlConfig, FirmwareConfig, PackConfig
from bms.errors import ConfigError
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase
from tests.integration.test_user_dbc import USER_BINDING, USER_DBC

ROLES = ("pack", "bms", "vcu")


def _slow_matrix(tmp_path: Path) -> Path:
    """The user matrix with ShuntData (784) every 100 ms instead of 10 ms and MasterCmd
    (800) every 200 ms instead of 20 ms."""
    dbc = USER_DBC
    for fid, ms in ((784, 100), (800, 200)):
        dbc, n = re.subn(rf'(BA_ "GenMsgCycleTime" BO_ {fid}) \d+;', rf"\1 {ms};", dbc)
        assert n == 1
    (tmp_path / "user.dbc").write_text(dbc)
    path = tmp_path / "user_binding.toml"
    path.write_text(USER_BINDING)
    return path


def _drive(seconds: float) -> Mission:
    return Mission(
        "t", [Phase("drive", seconds, np.full(int(seconds * 10), 50.0), 0.1)], 280.0, 0.5
    )


def test_timeouts_are_a_number_of_periods_or_the_event_default() -> None:
    assert rx_timeout_s("current", 0.1) == pytest.approx(RX_TIMEOUT_PERIODS["current"] * 0.1)
    assert rx_timeout_s("cells", None) == RX_TIMEOUT_EVENT_S["cells"]
    assert rx_timeout_s("heartbeat", 0.0) == RX_TIMEOUT_EVENT_S["heartbeat"]
    # the built-in matrix keeps the times its periods were chosen for
    with Emulator(Config(), nodes=("pack", "bms", "vcu", "charger")) as emu:
        bms, pack, chg = emu.nodes["bms"], emu.nodes["pack"], emu.nodes["charger"]
        got = (
            bms.current_timeout_s,  # type: ignore[attr-defined]
            bms.voltages_timeout_s,  # type: ignore[attr-defined]
            bms.cell_data_timeout_s,  # type: ignore[attr-defined]
            bms.temp_data_timeout_s,  # type: ignore[attr-defined]
            bms.heartbeat_timeout_s,  # type: ignore[attr-defined]
            pack.contactor_timeout_s,  # type: ignore[attr-defined]
            pack.bleed_timeout_s,  # type: ignore[attr-defined]
            chg.request_timeout_s,  # type: ignore[attr-defined]
        )
    np.testing.assert_allclose(got, (0.05, 0.05, 0.35, 3.5, 0.3, 0.1, 1.0, 0.5))


def _cfg(feedback_timeout_s: float) -> Config:
    return Config(
        pack=PackConfig(series=6, initial_soc=0.6),
        firmware=FirmwareConfig(
            contactors=ContactorControlConfig(feedback_timeout_s=feedback_timeout_s)
        ),
    )


def test_a_contactor_feedback_timeout_shorter_than_the_matrix_allows_is_refused(
    tmp_path: Path,
) -> None:
    # command every 200 ms, feedback every 100 ms, the 10 ms task: 0.31 s at worst
    binding = _slow_matrix(tmp_path)
    with pytest.raises(ConfigError) as err:
        Emulator(_cfg(0.3), nodes=ROLES, binding=binding)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("[firmware.contactors] feedback_timeout_s: 0.3 s is too short")
    assert "MasterCmd, every 200 ms" in line and "ShuntData, every 100 ms" in line
    assert "0.31 s" in line
    Emulator(_cfg(0.32), nodes=ROLES, binding=binding).close()


def test_a_matrix_with_slower_periods_keeps_the_closed_loop(tmp_path: Path) -> None:
    binding = _slow_matrix(tmp_path)
    cfg = _cfg(0.5)
    with Emulator(cfg, nodes=ROLES, binding=binding, mission=_drive(40.0)) as emu:
        node = emu.nodes["bms"]
        assert node.current_timeout_s == pytest.approx(0.5)  # type: ignore[attr-defined]
        assert emu.nodes["pack"].contactor_timeout_s == pytest.approx(1.0)  # type: ignore[attr-defined]
        emu.run(5.0)
        nan_ticks = 0
        for k in range(2000):  # 20 s, every 10 ms: what the firmware would see
            emu.run(5.0 + 0.01 * (k + 1))
            nan_ticks += not math.isfinite(node.measurement(emu.scheduler.now_s)[0].current_a)  # type: ignore[attr-defined]
        assert nan_ticks == 0
        assert emu.faults_seen == []
        assert emu.pack.contactors.closed
        assert emu.pack.current_a == pytest.approx(50.0)
        assert emu.link.stats.errors == {}

        # a current frame silent for less than its timeout (5 periods) is still fresh,
        # one silent for longer reads as not a number
        t0 = emu.scheduler.now_s
        emu.link.filtered.add("ShuntData")
        emu.link.tx_filter = lambda t, bm, data: None if bm.name == "ShuntData" else data
        emu.run(t0 + 0.35)
        assert math.isfinite(node.measurement(emu.scheduler.now_s)[0].current_a)  # type: ignore[attr-defined]
        emu.run(t0 + 0.65)
        assert math.isnan(node.measurement(emu.scheduler.now_s)[0].current_a)  # type: ignore[attr-defined]
