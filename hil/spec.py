"""The specification the HIL suite checks: times, tolerances, reaction times.

These are the figures a test compares with; they are written for the built-in
bus pack and matrix. For another BMS, edit them here (or in a copy of the
suite): each test names the figure it uses. Times in seconds (simulated in
virtual time, wall-clock on hardware).
"""

from __future__ import annotations

STARTUP_S = 3.0  # power-up until the device reports Standby with cell data
CLOSE_S = 2.0  # close request until Closed, through precharge
OPEN_S = 1.0  # open request until Standby with the contactors open
PERIOD_TOLERANCE = 0.10  # every cyclic message within 10 % of its DBC period
HEARTBEAT_REACTION_S = 2.0  # VCU silent until the command-timeout fault and open contactors
NO_CLOSE_WHILE_FAULT_S = 3.0  # a close request during a latched fault: nothing closes this long
SOC_TOLERANCE_PERC = 3.0  # reported SOC against the plant's truth
SOC_RECOVERY_PERC = 3.0  # after a 20 % initial error, at the end of the day's charge
LIMIT_WARNING_S = 3.0  # a draw above the limit: warning within this
LIMIT_FAULT_S = 12.0  # ... and a fault (contactors open) within this
BALANCING_START_S = 5.0  # an imbalance above the threshold: bleeding starts within this
BLEED_RATE_TOLERANCE = 0.2  # charge bled from the high cells against V/R x duty x time
PACK_VOLTAGE_ACCURACY = (0.01, 1.0)  # reported pack voltage: +/- (1 % of reading + 1 V)
CURRENT_ACCURACY = (0.015, 0.5)  # reported pack current: +/- (1.5 % of reading + 0.5 A)
CHARGE_LIMIT_NOMINAL_A = 280.0  # charge current limit at 25 degC, SOC 50 % (1C)
DISCHARGE_LIMIT_NOMINAL_A = 560.0  # discharge current limit at 25 degC, SOC 50 % (2C)
NOMINAL_LIMIT_FRACTION = 0.9  # measured at 25 degC, SOC 50 %: at least this of nominal
CELL_DATA_REACTION_S = 1.5  # cell voltages stop coming until a latched fault and open contactors
