"""The values the emulator's nodes exchange, by name, with their units.

A binding file maps DBC signals to these names; this table says what each
name means (its unit or its labels) and which node produces it, so a binding
can be checked at start-up: a name nobody produces, a unit that does not fit
the signal's, a label the DBC's value table lacks. Identifiers, layouts and
scaling never appear here: they come from the DBC.

Kinds:
- ``phys``: a physical value in ``unit`` (converted to the signal's unit
  when both are known and compatible, e.g. V and mV);
- ``count``: a dimensionless integer (a group number, a number of groups);
- ``flag``: a bool, sent as raw 0 or 1;
- ``enum``: one of ``labels``, sent as the raw value the DBC's value table
  gives that label (compared without case, spaces and underscores);
- ``array`` / ``flags``: one physical value / bool per series group or
  sensor, carried in pages of a multiplexed message.

Sign convention: positive current = discharge.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BMS_STATES",
    "CHECK_SIGNALS",
    "LEVEL_LABELS",
    "NODE_INPUTS",
    "NODE_OUTPUTS",
    "ROLES",
    "VALUES",
    "Value",
    "unit_factor",
]

ROLES = ("pack", "bms", "vcu", "charger")


@dataclass(frozen=True)
class Value:
    kind: str  # phys | count | flag | enum | array | flags
    unit: str = ""
    labels: tuple[str, ...] = ()
    doc: str = ""


BMS_STATES = ("Standby", "Precharge", "ClosedDrive", "ClosedCharge", "Opening", "Fault")
LEVEL_LABELS = ("Ok", "Warning", "Alarm", "Fault")
OPEN_CLOSED = ("Open", "Closed")
CONTACTOR_FAULTS = ("None", "PrechargeFailed", "Welded", "FeedbackLost")
MODES = ("Standby", "Drive", "Charge")
VCU_STATES = ("Off", "Ready", "Driving", "Charging", "Parked")
CHARGER_STATES = ("Off", "ConstantCurrent", "ConstantVoltage", "Fault")

# firmware protection check -> the value name that carries its level
CHECK_SIGNALS = {
    name: f"level_{name}"
    for name in (
        "cell_overvoltage",
        "cell_undervoltage",
        "charge_overtemp",
        "discharge_overtemp",
        "charge_undertemp",
        "discharge_undertemp",
        "charge_overcurrent",
        "discharge_overcurrent",
        "cell_spread",
        "command_timeout",
        "cell_voltage_implausible",
        "temp_sensor_implausible",
        "temp_sensor_stuck",
        "current_sensor_offset",
        "current_implausible",
        "cell_data_timeout",
    )
}

VALUES: dict[str, Value] = {
    # measurements (pack node: CMU and PDU) and the BMS's reports of them
    "cell_voltage_v": Value("array", "V", doc="cell voltage per series group"),
    "temp_c": Value("array", "degC", doc="temperature per sensor"),
    "current_a": Value("phys", "A", doc="pack current, + = discharge"),
    "pack_voltage_v": Value("phys", "V", doc="battery-side pack voltage"),
    "link_voltage_v": Value("phys", "V", doc="DC-link voltage behind the contactors"),
    "pack_power_kw": Value("phys", "kW", doc="pack voltage times current, + = discharge"),
    "main_pos_feedback": Value("flag"),
    "main_neg_feedback": Value("flag"),
    "precharge_feedback": Value("flag"),
    # BMS commands to the pack
    "main_pos_command": Value("flag"),
    "main_neg_command": Value("flag"),
    "precharge_command": Value("flag"),
    "bleed": Value("flags", doc="bleed switch per series group"),
    # BMS reports to the vehicle
    "bms_state": Value("enum", labels=BMS_STATES),
    "main_pos_state": Value("enum", labels=OPEN_CLOSED),
    "main_neg_state": Value("enum", labels=OPEN_CLOSED),
    "precharge_state": Value("enum", labels=OPEN_CLOSED),
    "protection_level": Value("enum", labels=LEVEL_LABELS),
    "fault_latched": Value("flag"),
    "contactor_fault": Value("enum", labels=CONTACTOR_FAULTS),
    "charge_current_limit_a": Value("phys", "A"),
    "discharge_current_limit_a": Value("phys", "A"),
    "charge_voltage_limit_v": Value("phys", "V"),
    "soc_display_perc": Value("phys", "%"),
    "soc_min_perc": Value("phys", "%"),
    "soc_max_perc": Value("phys", "%"),
    "soc_mean_perc": Value("phys", "%"),
    "soh_perc": Value("phys", "%"),
    "soe_kwh": Value("phys", "kWh"),
    "max_cell_voltage_v": Value("phys", "V"),
    "min_cell_voltage_v": Value("phys", "V"),
    "max_cell_group": Value("count", doc="series group number, from 1"),
    "min_cell_group": Value("count", doc="series group number, from 1"),
    "max_temp_c": Value("phys", "degC"),
    "min_temp_c": Value("phys", "degC"),
    "mean_temp_c": Value("phys", "degC"),
    "max_temp_sensor": Value("count", doc="sensor number, from 1"),
    "min_temp_sensor": Value("count", doc="sensor number, from 1"),
    "balancing_active": Value("flag"),
    "bleeding_groups": Value("count"),
    "cell_voltage_spread_v": Value("phys", "V"),
    **{v: Value("enum", labels=LEVEL_LABELS) for v in CHECK_SIGNALS.values()},
    # BMS to charger
    "charge_voltage_request_v": Value("phys", "V"),
    "charge_current_request_a": Value("phys", "A", doc="a positive number"),
    "charge_enable": Value("flag"),
    # vehicle to BMS
    "mode_request": Value("enum", labels=MODES),
    "contactor_request": Value("enum", labels=("Open", "Close")),
    "fault_reset": Value("flag"),
    "vcu_state": Value("enum", labels=VCU_STATES),
    # charger to BMS
    "charger_voltage_v": Value("phys", "V"),
    "charger_current_a": Value("phys", "A", doc="into the pack, a positive number"),
    "charger_state": Value("enum", labels=CHARGER_STATES),
    "charger_hardware_fault": Value("flag"),
    "charger_overtemp": Value("flag"),
    "charger_input_fault": Value("flag"),
    "charger_comm_timeout": Value("flag"),
}

_PACK_OUT = (
    "cell_voltage_v",
    "temp_c",
    "current_a",
    "pack_voltage_v",
    "link_voltage_v",
    "main_pos_feedback",
    "main_neg_feedback",
    "precharge_feedback",
)
_VCU_OUT = ("mode_request", "contactor_request", "fault_reset", "vcu_state")
_CHARGER_OUT = (
    "charger_voltage_v",
    "charger_current_a",
    "charger_state",
    "charger_hardware_fault",
    "charger_overtemp",
    "charger_input_fault",
    "charger_comm_timeout",
)
_BMS_OUT = (
    *(v for v in VALUES if v not in _PACK_OUT + _VCU_OUT + _CHARGER_OUT),
    "cell_voltage_v",
    "current_a",
    "pack_voltage_v",
    "link_voltage_v",
)

# what each node can put on the bus
NODE_OUTPUTS: dict[str, frozenset[str]] = {
    "pack": frozenset(_PACK_OUT),
    "bms": frozenset(_BMS_OUT),
    "vcu": frozenset(_VCU_OUT),
    "charger": frozenset(_CHARGER_OUT),
}

# what each node needs from the bus to do its job (a binding that leaves one out fails)
NODE_INPUTS: dict[str, frozenset[str]] = {
    "pack": frozenset({"main_pos_command", "main_neg_command", "precharge_command"}),
    "bms": frozenset(
        {
            "cell_voltage_v",
            "temp_c",
            "current_a",
            "pack_voltage_v",
            "link_voltage_v",
            "main_pos_feedback",
            "main_neg_feedback",
            "precharge_feedback",
            "mode_request",
            "contactor_request",
        }
    ),
    "vcu": frozenset({"bms_state", "charge_current_limit_a", "discharge_current_limit_a"}),
    "charger": frozenset({"charge_voltage_request_v", "charge_current_request_a", "charge_enable"}),
}

_UNITS = {
    "v": ("V", 1.0),
    "mv": ("V", 1e-3),
    "kv": ("V", 1e3),
    "a": ("A", 1.0),
    "ma": ("A", 1e-3),
    "ka": ("A", 1e3),
    "%": ("%", 1.0),
    "degc": ("degC", 1.0),
    "°c": ("degC", 1.0),
    "c": ("degC", 1.0),
    "deg": ("degC", 1.0),
    "kwh": ("kWh", 1.0),
    "wh": ("kWh", 1e-3),
    "ah": ("Ah", 1.0),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "w": ("kW", 1e-3),
    "kw": ("kW", 1.0),
}


def unit_factor(value_unit: str, signal_unit: str) -> float | None:
    """Factor that turns a value in ``value_unit`` into ``signal_unit`` (1.0 when the
    signal has no unit); None when the two units measure different things."""
    if not signal_unit.strip():
        return 1.0
    a = _UNITS.get(value_unit.strip().lower().replace(" ", ""))
    b = _UNITS.get(signal_unit.strip().lower().replace(" ", ""))
    if a is None or b is None:
        return 1.0 if value_unit.strip() == signal_unit.strip() else None
    if a[0] != b[0]:
        return None
    return a[1] / b[1]
