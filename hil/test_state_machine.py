"""State machine: power-up, closing through precharge, opening, faults and the safe state."""

from __future__ import annotations

import pytest

from hil import spec


@pytest.mark.requirement(
    "SM-1",
    f"After power-up the device reports Standby, contactors open, within {spec.STARTUP_S} s.",
)
def test_power_up_to_standby_with_contactors_open(dut, plant, clock, figures) -> None:
    took = dut.power_up(spec.STARTUP_S)
    figures["start-up"] = f"{took:.2f} s"
    clock.hold(
        lambda: (
            dut.value("bms_state") == "Standby"
            and dut.value("main_pos_state") == "Open"
            and dut.value("main_neg_state") == "Open"
            and not plant.contactors.closed
        ),
        1.0,
        "Standby with the contactors open and reported open",
    )


@pytest.mark.requirement(
    "SM-2",
    f"A close request goes through precharge to closed within {spec.CLOSE_S} s.",
)
def test_close_request_goes_through_precharge_to_closed(dut, vcu, plant, clock, figures) -> None:
    dut.power_up()
    states: list[str] = []
    precharge_seen = []

    def closed() -> bool:
        s = dut.value("bms_state")
        if not states or states[-1] != s:
            states.append(s)
        if plant.contactors.precharging:
            precharge_seen.append(clock.now_s)
        return s == "ClosedDrive" and plant.contactors.closed

    vcu.request("Drive", "Close")
    took = clock.wait_for(
        closed, spec.CLOSE_S, "ClosedDrive after a close request", show=("bms_state",)
    )
    figures["close"] = f"{took:.2f} s"
    figures["states"] = " > ".join(states)
    assert "Precharge" in states, f"the device reported {' > '.join(states)}: no Precharge"
    assert precharge_seen, "the precharge contactor never closed before the mains"
    link_v, pack_v = dut.value("link_voltage_v"), dut.value("pack_voltage_v")
    assert abs(link_v - pack_v) < 0.05 * pack_v, f"DC link {link_v} V against pack {pack_v} V"


@pytest.mark.requirement(
    "SM-3",
    "An open request brings the device to Standby with the contactors open within "
    f"{spec.OPEN_S} s.",
)
def test_open_request_opens_the_contactors(dut, vcu, plant, clock, figures) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(50.0)
    clock.advance(2.0)
    took = dut.open(spec.OPEN_S)
    figures["open"] = f"{took:.2f} s"
    assert abs(plant.current_a) < 1e-9, "current still flows with the contactors open"


@pytest.mark.requirement(
    "SM-4", "A fault brings the device to its safe state: Fault, latched, contactors open."
)
def test_fault_leads_to_the_safe_state(dut, vcu, faults, plant, clock, figures) -> None:
    dut.power_up()
    dut.close()
    vcu.drive(100.0)
    clock.advance(1.0)
    faults.open_sense_wire(17)
    took = clock.wait_for(
        lambda: dut.value("bms_state") == "Fault" and not plant.contactors.closed,
        2.0,
        "Fault state and open contactors after an open sense wire",
        show=("bms_state", "level_cell_voltage_implausible"),
    )
    figures["reaction"] = f"{took:.2f} s"
    assert dut.value("fault_latched") is True
    assert dut.value("protection_level") == "Fault"


@pytest.mark.requirement(
    "SM-5",
    "While a fault is latched, a close request closes nothing; after the cause is gone and "
    "a fault reset, the device closes again.",
)
def test_no_closing_while_a_fault_is_latched(dut, vcu, faults, plant, clock) -> None:
    dut.power_up()
    faults.temp_sensor(0, "open")
    clock.wait_for(
        lambda: dut.value("fault_latched") is True,
        2.0,
        "a latched fault after an open temperature sensor",
        show=("level_temp_sensor_implausible",),
    )
    vcu.request("Drive", "Close")
    clock.hold(
        lambda: (
            not plant.contactors.closed
            and not plant.contactors.precharging
            and dut.value("bms_state") != "ClosedDrive"
        ),
        spec.NO_CLOSE_WHILE_FAULT_S,
        "contactors open while a fault is latched and a close is requested",
    )
    faults.clear()
    vcu.request("Standby", "Open")
    clock.advance(0.5)
    dut.fault_reset()
    clock.wait_for(lambda: dut.value("fault_latched") is False, 2.0, "fault cleared after reset")
    dut.close()
