"""Protections: each fault gives its flag, and the contactors open within the reaction time.

Each case prepares the plant (a cell, a sensor, a temperature), then loads the
pack the way that makes the fault appear (the vehicle or a faulty charger
ignoring the device's limits), and measures from that moment until the
device's flag for the check reads Fault and the contactors are open. The
reaction time is the specification's: the check's debounce and the
contactor opening, with margin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hil.bench import Bench


@dataclass(frozen=True)
class Case:
    req: str
    what: str
    flag: str  # the device's value that must read Fault
    prepare: Callable[[Bench], None]
    current_a: float  # drawn from the pack (+ = discharge), limits ignored
    reaction_s: float
    closed: bool = True  # contactors closed before the fault


def _temps(temp_c: float) -> Callable[[Bench], None]:
    return lambda b: b.faults.cell_temp(slice(None), temp_c)


CASES = [
    Case("PRT-1", "cell over-voltage", "level_cell_overvoltage",
         lambda b: b.faults.cell_voltage(5, "over"), -200.0, 2.0),
    Case("PRT-2", "cell under-voltage", "level_cell_undervoltage",
         lambda b: b.faults.cell_voltage(5, "under"), 250.0, 2.0),
    Case("PRT-3", "over-temperature in charge", "level_charge_overtemp",
         _temps(58.0), -30.0, 4.0),
    Case("PRT-4", "over-temperature in discharge", "level_discharge_overtemp",
         _temps(68.0), 100.0, 4.0),
    Case("PRT-5", "under-temperature in charge", "level_charge_undertemp",
         _temps(-8.0), -20.0, 4.0),
    Case("PRT-6", "over-current in charge", "level_charge_overcurrent",
         lambda b: None, -450.0, 3.0),
    Case("PRT-7", "over-current in discharge", "level_discharge_overcurrent",
         lambda b: None, 750.0, 2.0),
    Case("PRT-8", "open sense wire", "level_cell_voltage_implausible",
         lambda b: b.faults.open_sense_wire(33), 50.0, 2.0),
    Case("PRT-9", "temperature sensor open", "level_temp_sensor_implausible",
         lambda b: b.faults.temp_sensor(3, "open"), 50.0, 2.0),
    Case("PRT-10", "temperature sensor stuck", "level_temp_sensor_stuck",
         lambda b: b.faults.temp_sensor(3, "stuck"), 50.0, 65.0),
    Case("PRT-11", "cell voltage spread", "level_cell_spread",
         lambda b: b.faults.cell_soc(5, 0.03), 0.0, 13.0),
    Case("PRT-12", "current sensor offset (contactors open)", "level_current_sensor_offset",
         lambda b: b.faults.current_offset(6.0), 0.0, 2.0, closed=False),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.what.replace(" ", "-") for c in CASES])
def test_protection_flags_the_fault_and_opens_the_contactors(
    case: Case, bench, dut, vcu, plant, clock, figures, request
) -> None:
    request.node.add_marker(
        pytest.mark.requirement(
            case.req,
            f"{case.what}: the device flags {case.flag} as Fault and the contactors are "
            f"open within {case.reaction_s:g} s.",
        )
    )
    dut.power_up()
    if case.closed:
        dut.close()
    clock.advance(0.5)
    assert dut.value(case.flag) == "Ok", f"{case.flag} is {dut.value(case.flag)} before the fault"
    case.prepare(bench)
    vcu.drive(case.current_a, respect_limits=False)
    flag_at: list[float] = []

    def tripped() -> bool:
        if not flag_at and dut.value(case.flag) == "Fault":
            flag_at.append(clock.now_s)
        return bool(flag_at) and not plant.contactors.closed and not plant.contactors.precharging

    t0 = clock.now_s
    took = clock.wait_for(
        tripped,
        case.reaction_s,
        f"{case.what}: {case.flag} = Fault and contactors open",
        show=(case.flag, "bms_state", "protection_level"),
    )
    figures["flag"] = f"{flag_at[0] - t0:.2f} s"
    figures["contactors open"] = f"{took:.2f} s"
    assert dut.value("fault_latched") is True, "the fault is not reported latched"
