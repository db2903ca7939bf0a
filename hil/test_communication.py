"""Communication: periods, alive counters and CRCs, receive timeouts, bad frames."""

from __future__ import annotations

import can
import pytest

from hil import spec
from hil.helpers import expect_counters_and_crc, expect_period


@pytest.mark.requirement(
    "COM-1", "Every cyclic message of the device comes at its DBC period, within 10 %."
)
def test_every_message_at_its_dbc_period_within_10_percent(dut, vcu, clock, figures) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(100.0)
    t0 = clock.now_s
    clock.advance(12.0)
    checked = 0
    for name in dut.messages:
        rec = dut.record(name)
        if not rec.bm.codec.message.cycle_time:
            continue
        _, lo, hi = expect_period(dut, name, spec.PERIOD_TOLERANCE, since_s=t0)
        figures[name] = f"{lo * 1000:.1f}..{hi * 1000:.1f} ms"
        checked += 1
    assert checked >= 5, f"only {checked} cyclic messages of the device in the binding"


@pytest.mark.requirement(
    "COM-2", "Every frame with an alive counter and a CRC carries a valid one, in sequence."
)
def test_alive_counters_and_crcs_are_valid(dut, vcu, clock, figures) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(150.0)
    clock.advance(5.0)
    protected = [n for n in dut.messages if dut.record(n).bm.crc or dut.record(n).bm.counter]
    assert protected, "no message of the device has an alive counter or a CRC in the binding"
    total = sum(expect_counters_and_crc(dut, name) for name in protected)
    figures["frames checked"] = total


@pytest.mark.requirement(
    "COM-3",
    "When the vehicle controller falls silent, the device reports a command timeout and "
    f"opens the contactors within {spec.HEARTBEAT_REACTION_S} s.",
)
def test_heartbeat_loss_opens_contactors_within_timeout(
    dut, vcu, faults, plant, clock, figures
) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(80.0)
    clock.advance(1.0)
    faults.heartbeat_loss()
    took = clock.wait_for(
        lambda: dut.value("level_command_timeout") == "Fault" and not plant.contactors.closed,
        spec.HEARTBEAT_REACTION_S,
        "command timeout fault and open contactors after the VCU fell silent",
        show=("level_command_timeout", "bms_state"),
    )
    figures["reaction"] = f"{took:.2f} s"


@pytest.mark.requirement(
    "COM-4", "A command frame with a bad CRC is not obeyed; the device keeps running."
)
def test_command_with_bad_crc_is_not_obeyed(dut, vcu, faults, plant, clock) -> None:
    dut.power_up()
    dut.close()
    faults.corrupt(dut.bench.message_to_device("mode_request"), "crc")
    vcu.request("Standby", "Open")
    clock.hold(
        lambda: plant.contactors.closed and dut.value("bms_state") == "ClosedDrive",
        0.2,
        "contactors closed while every open request carries a bad CRC",
        step_s=0.02,
    )
    faults.clear_frames()
    dut.open()


@pytest.mark.requirement(
    "COM-5",
    "Frames with unknown identifiers, wrong lengths and error frames on the bus do not "
    "disturb the device.",
)
def test_garbage_on_the_bus_does_not_disturb_the_device(dut, bus, vcu, plant, clock) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(50.0)
    known = {fid for fid, _ in dut.bench.emu.binding.known}
    unknown = next(i for i in range(0x700, 0x7FF) if i not in known)
    command = dut.bench.emu.binding.messages[dut.bench.message_to_device("mode_request")]
    for k in range(50):
        bus.send(can.Message(arbitration_id=unknown, data=bytes([k] * 8), is_extended_id=False))
        short = can.Message(
            arbitration_id=command.codec.frame_id,
            data=b"\x01",
            is_extended_id=command.codec.is_extended,
        )
        bus.send(short)
        bus.send(can.Message(is_error_frame=True, arbitration_id=0, data=b""))
        clock.advance(0.02)
    clock.hold(
        lambda: dut.value("bms_state") == "ClosedDrive" and plant.contactors.closed,
        1.0,
        "device closed and driving after garbage frames",
    )


@pytest.mark.requirement(
    "COM-6",
    "Cell voltages that stop coming (frames lost) give a cell-data fault and open "
    f"contactors within {spec.CELL_DATA_REACTION_S} s.",
)
def test_lost_cell_voltage_frames_open_the_contactors(
    dut, vcu, faults, plant, clock, figures
) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(60.0)
    clock.advance(0.5)
    faults.drop(dut.bench.message_to_device("cell_voltage_v"))
    took = clock.wait_for(
        lambda: dut.value("fault_latched") is True and not plant.contactors.closed,
        spec.CELL_DATA_REACTION_S,
        "a latched fault and open contactors after the cell voltages stopped",
        show=("bms_state", "level_cell_data_timeout"),
    )
    figures["reaction"] = f"{took:.2f} s"


@pytest.mark.requirement(
    "COM-7",
    "Frames that come late but within the receive timeout (current 30 ms late) do not "
    "disturb the device: it stays closed and reports the current.",
)
def test_late_frames_within_the_timeout_are_tolerated(dut, vcu, faults, plant, clock) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(120.0)
    faults.delay(dut.bench.message_to_device("current_a"), 0.03)
    clock.hold(
        lambda: dut.value("bms_state") == "ClosedDrive" and plant.contactors.closed,
        3.0,
        "closed and driving with the current frames 30 ms late",
    )
    reported = dut.value("current_a")
    assert abs(reported - plant.current_a) < 2.0, f"current {reported} A, true {plant.current_a} A"


@pytest.mark.requirement(
    "COM-8",
    "A vehicle controller whose alive counter is frozen is treated as lost: command "
    f"timeout fault and open contactors within {spec.HEARTBEAT_REACTION_S} s.",
)
def test_frozen_alive_counter_is_treated_as_a_lost_vcu(dut, vcu, faults, plant, clock) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(50.0)
    clock.advance(0.5)
    faults.corrupt(dut.bench.message_to_device("mode_request"), "counter")
    clock.wait_for(
        lambda: dut.value("level_command_timeout") == "Fault" and not plant.contactors.closed,
        spec.HEARTBEAT_REACTION_S,
        "command timeout fault and open contactors after the VCU's alive counter froze",
        show=("level_command_timeout", "bms_state"),
    )
