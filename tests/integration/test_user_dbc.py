"""A user's own CAN matrix: 11-bit identifiers, big-endian and signed signals, DBC
multiplexing, units in mV and mA; and a broken binding that lists every problem."""

from __future__ import annotations

from pathlib import Path

import can
import cantools
import numpy as np
import pytest

from bms.canbus.binding import load_binding
from bms.config import Config, PackConfig
from bms.errors import BindingError
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase

USER_DBC = """VERSION ""

NS_ :

BS_:

BU_: Master Slave Shunt Vehicle

BO_ 769 CellVolt: 8 Slave
 SG_ Mux M : 7|8@0+ (1,0) [0|1] "" Master
 SG_ U1 m0 : 15|16@0+ (1,0) [0|65535] "mV" Master
 SG_ U2 m0 : 31|16@0+ (1,0) [0|65535] "mV" Master
 SG_ U3 m0 : 47|16@0+ (1,0) [0|65535] "mV" Master
 SG_ U4 m1 : 15|16@0+ (1,0) [0|65535] "mV" Master
 SG_ U5 m1 : 31|16@0+ (1,0) [0|65535] "mV" Master
 SG_ U6 m1 : 47|16@0+ (1,0) [0|65535] "mV" Master

BO_ 770 Temps: 2 Slave
 SG_ T1 : 7|8@0- (1,0) [-128|127] "degC" Master
 SG_ T2 : 15|8@0- (1,0) [-128|127] "degC" Master

BO_ 784 ShuntData: 8 Shunt
 SG_ I : 7|32@0- (1,0) [-2147483648|2147483647] "mA" Master
 SG_ UPack : 39|16@0+ (0.1,0) [0|6553.5] "V" Master
 SG_ ULink : 55|12@0+ (0.5,0) [0|2047.5] "V" Master
 SG_ FbPos : 56|1@1+ (1,0) [0|1] "" Master
 SG_ FbNeg : 57|1@1+ (1,0) [0|1] "" Master
 SG_ FbPre : 58|1@1+ (1,0) [0|1] "" Master

BO_ 800 MasterCmd: 2 Master
 SG_ KPos : 0|1@1+ (1,0) [0|1] "" Shunt
 SG_ KNeg : 1|1@1+ (1,0) [0|1] "" Shunt
 SG_ KPre : 2|1@1+ (1,0) [0|1] "" Shunt
 SG_ B1 : 8|1@1+ (1,0) [0|1] "" Slave
 SG_ B2 : 9|1@1+ (1,0) [0|1] "" Slave
 SG_ B3 : 10|1@1+ (1,0) [0|1] "" Slave
 SG_ B4 : 11|1@1+ (1,0) [0|1] "" Slave
 SG_ B5 : 12|1@1+ (1,0) [0|1] "" Slave
 SG_ B6 : 13|1@1+ (1,0) [0|1] "" Slave

BO_ 801 MasterStatus: 8 Master
 SG_ State : 0|4@1+ (1,0) [0|15] "" Vehicle
 SG_ Soc : 8|8@1+ (0.5,0) [0|100] "%" Vehicle
 SG_ IChgMax : 16|16@1+ (0.1,0) [0|6553.5] "A" Vehicle
 SG_ IDisMax : 32|16@1+ (0.1,0) [0|6553.5] "A" Vehicle
 SG_ Spare : 48|16@1+ (1,0) [0|65535] "" Vehicle

BO_ 816 VehicleCmd: 2 Vehicle
 SG_ Mode : 0|2@1+ (1,0) [0|3] "" Master
 SG_ Close : 2|1@1+ (1,0) [0|1] "" Master
 SG_ Cnt : 8|4@1+ (1,0) [0|15] "" Master

BA_DEF_ BO_ "GenMsgCycleTime" INT 0 65535;
BA_DEF_DEF_ "GenMsgCycleTime" 0;
BA_ "GenMsgCycleTime" BO_ 769 100;
BA_ "GenMsgCycleTime" BO_ 770 1000;
BA_ "GenMsgCycleTime" BO_ 784 10;
BA_ "GenMsgCycleTime" BO_ 800 20;
BA_ "GenMsgCycleTime" BO_ 801 100;
BA_ "GenMsgCycleTime" BO_ 816 50;
VAL_ 801 State 0 "STANDBY" 1 "PRECHARGE" 2 "CLOSED_DRIVE" 3 "CLOSED_CHARGE" 4 "OPENING" 5 "FAULT" ;
VAL_ 816 Mode 0 "standby" 1 "drive" 2 "charge" ;
VAL_ 816 Close 0 "open" 1 "close" ;
"""

USER_BINDING = """
dbc = ["user.dbc"]

[nodes]
bms = "Master"
pack = ["Slave", "Shunt"]
vcu = "Vehicle"

[message.CellVolt]
array = "cell_voltage_v"
elements = ["U1", "U2", "U3", "U4", "U5", "U6"]

[message.Temps]
array = "temp_c"
elements = ["T1", "T2"]

[message.ShuntData.signals]
I = "current_a"
UPack = "pack_voltage_v"
ULink = "link_voltage_v"
FbPos = "main_pos_feedback"
FbNeg = "main_neg_feedback"
FbPre = "precharge_feedback"

[message.MasterCmd]
array = "bleed"
elements = ["B1", "B2", "B3", "B4", "B5", "B6"]
[message.MasterCmd.signals]
KPos = "main_pos_command"
KNeg = "main_neg_command"
KPre = "precharge_command"

[message.MasterStatus]
unused = ["Spare"]
[message.MasterStatus.signals]
State = "bms_state"
Soc = "soc_display_perc"
IChgMax = "charge_current_limit_a"
IDisMax = "discharge_current_limit_a"

[message.VehicleCmd]
counter = "Cnt"
[message.VehicleCmd.signals]
Mode = "mode_request"
Close = "contactor_request"
"""

ROLES = ("pack", "bms", "vcu")


@pytest.fixture
def user_binding(tmp_path: Path) -> Path:
    (tmp_path / "user.dbc").write_text(USER_DBC)
    path = tmp_path / "user_binding.toml"
    path.write_text(USER_BINDING)
    return path


def _cfg() -> Config:
    return Config(pack=PackConfig(series=6, initial_soc=0.6))


def test_a_user_matrix_runs_the_closed_loop(user_binding: Path) -> None:
    db = cantools.database.load_file(str(user_binding.parent / "user.dbc"))
    status = db.get_message_by_name("MasterStatus")
    cells = db.get_message_by_name("CellVolt")
    mission = Mission("t", [Phase("drive", 30.0, np.full(300, 50.0), 0.1)], 280.0, 0.5)
    bus = can.Bus(interface="virtual", channel="user-dbc", receive_own_messages=False)
    listener = can.Bus(interface="virtual", channel="user-dbc", receive_own_messages=False)
    try:
        with Emulator(_cfg(), nodes=ROLES, binding=user_binding, bus=bus, mission=mission) as emu:
            emu.run(10.0)
            assert emu.link.stats.errors == {}
            assert emu.pack.contactors.closed
            assert emu.pack.current_a == pytest.approx(50.0)
            # the cell voltages crossed the bus in mV, on two multiplexer pages
            seen = emu.nodes["bms"].arrays["cell_voltage_v"]
            np.testing.assert_allclose(seen, emu.pack.group_voltage_v, atol=0.02)
            frames = []
            while (m := listener.recv(0.0)) is not None:
                frames.append(m)
        assert all(not m.is_extended_id for m in frames)
        states = [
            str(status.decode(m.data)["State"])
            for m in frames
            if m.arbitration_id == status.frame_id
        ]
        assert states[0] == "STANDBY" and states[-1] == "CLOSED_DRIVE"
        muxes = {cells.decode(m.data)["Mux"] for m in frames if m.arbitration_id == 769}
        assert muxes == {0, 1}
    finally:
        bus.shutdown()
        listener.shutdown()


def test_a_broken_binding_lists_every_problem(user_binding: Path) -> None:
    # an alive counter on one page only of a multiplexed message
    dbc = user_binding.parent / "user.dbc"
    dbc.write_text(
        USER_DBC.replace(
            ' SG_ U6 m1 : 47|16@0+ (1,0) [0|65535] "mV" Master\n',
            ' SG_ U6 m1 : 47|16@0+ (1,0) [0|65535] "mV" Master\n'
            ' SG_ Cnt7 m1 : 63|4@0+ (1,0) [0|15] "" Master\n',
        )
    )
    text = user_binding.read_text()
    text = text.replace(
        'elements = ["U1", "U2", "U3", "U4", "U5", "U6"]',
        'elements = ["U1", "U2", "U3", "U4", "U5", "U6"]\ncounter = "Cnt7"',
    )
    text = text.replace('I = "current_a"', 'I = "pack_voltage_v"')  # mA is no voltage
    text = text.replace('unused = ["Spare"]', "")  # a transmitted signal left unbound
    text = text.replace('Soc = "soc_display_perc"', 'Soc = "soc_display_perc"\nSoh = "soh_perc"')
    text += '\n[message.NoSuchMessage.signals]\nX = "current_a"\n'
    text += '\n[message.Temps.signals]\nT9 = "temp_c"\n'
    text = text.replace('State = "bms_state"', 'State = "contactor_fault"')
    user_binding.write_text(text)
    with pytest.raises(BindingError) as err:
        load_binding(user_binding, {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}, ROLES)
    problems = "\n".join(err.value.problems)
    assert "unit mismatch: the DBC says 'mA', 'pack_voltage_v' is in V" in problems
    assert "signal 'Spare' is transmitted but bound to nothing" in problems
    assert "no signal 'Soh' in message MasterStatus" in problems
    assert "no message 'NoSuchMessage' in the DBC files" in problems
    assert "no signal 'T9' in message Temps" in problems
    assert "the value table lacks None, PrechargeFailed, Welded, FeedbackLost" in problems
    assert "node bms: no bound message carries its input 'current_a'" in problems
    assert (
        "alive counter 'Cnt7' is multiplexed (only in the frames of Mux = 1); it must be in"
        " every frame" in problems
    )
    assert len(err.value.problems) >= 8
    assert str(err.value).startswith(f"{user_binding}: ")


def test_a_message_with_a_problem_is_not_also_reported_as_missing_values(
    user_binding: Path,
) -> None:
    """One signal missing from a message is one problem: the values the message binds are
    not listed again as inputs that no message carries."""
    dbc = user_binding.parent / "user.dbc"
    lines = [ln for ln in USER_DBC.splitlines(keepends=True) if " SG_ FbPre " not in ln]
    assert len(lines) == len(USER_DBC.splitlines()) - 1
    dbc.write_text("".join(lines))
    sizes = {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}
    with pytest.raises(BindingError) as err:
        load_binding(user_binding, sizes, ROLES)
    assert err.value.problems == ["[message.ShuntData]: no signal 'FbPre' in message ShuntData"]
    # `bms-emu dbc check` checks the nodes the binding maps (no charger here), not all four
    with pytest.raises(BindingError) as err:
        load_binding(user_binding, sizes, None)
    assert err.value.problems == ["[message.ShuntData]: no signal 'FbPre' in message ShuntData"]
    # a value that no message binds at all is still missing
    text = user_binding.read_text().replace('FbPre = "precharge_feedback"\n', "")
    user_binding.write_text(text)
    dbc.write_text(USER_DBC.replace(" SG_ FbPre ", " SG_ FbPreX "))
    with pytest.raises(BindingError) as err:
        load_binding(user_binding, sizes, ROLES)
    assert "node bms: no bound message carries its input 'precharge_feedback'" in (
        err.value.problems
    )


def test_binding_refuses_a_pack_too_big_for_the_matrix(user_binding: Path) -> None:
    with pytest.raises(
        BindingError, match="the DBC carries 6 elements of 'cell_voltage_v', the pack has 8"
    ):
        load_binding(user_binding, {"cell_voltage_v": 8, "temp_c": 2, "bleed": 8}, ROLES)


def test_binding_file_errors_are_one_line(tmp_path: Path) -> None:
    from bms.errors import ConfigError

    with pytest.raises(ConfigError, match="binding file not found"):
        load_binding(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("dbc = [\n")
    with pytest.raises(ConfigError, match="cannot read the binding"):
        load_binding(bad)


def test_a_binding_of_the_wrong_shape_lists_its_problems(user_binding: Path) -> None:
    text = user_binding.read_text()
    text = text.replace('UPack = "pack_voltage_v"', "UPack = 5")
    text = text.replace('counter = "Cnt"', "counter = 3")
    user_binding.write_text(text)
    with pytest.raises(BindingError) as err:
        load_binding(user_binding, {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}, ROLES)
    problems = "\n".join(err.value.problems)
    assert "UPack = 5: must be a value name (a string)" in problems
    assert "counter must be a name (a string), got 3" in problems
    broken = user_binding.parent / "broken.toml"
    broken.write_text('dbc = ["user.dbc"]\nnodes = 5\nmessage = "everything"\n')
    with pytest.raises(BindingError) as err:
        load_binding(broken, {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}, ROLES)
    problems = "\n".join(err.value.problems)
    assert "[nodes]: must be a table, got 5" in problems
    assert "[message]: must be a table, got 'everything'" in problems
