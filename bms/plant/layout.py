"""Row layout of the plant's structure-of-arrays state.

The kernels take a few 2-D float64 arrays whose rows are named here, so a call
from Python passes 7 arrays instead of 30 (each argument costs dispatch time).
Cells are numbered ``cell = series_index * parallel + parallel_index``.

Sign convention, everywhere in the package: positive current = discharge.
"""

from __future__ import annotations

# --- x: per-cell state, shape (NX, n_cells) -----------------------------------------------
X_SOC = 0  # state of charge, dimensionless; may leave [0, 1] (see X_FLAG)
X_V1 = 1  # voltage across RC pair 1, V (positive while discharging)
X_V2 = 2  # voltage across RC pair 2, V
X_H = 3  # hysteresis state in [-1, 1]: -1 discharge branch, +1 charge branch
X_TEMP = 4  # cell temperature, degC
X_I = 5  # current through the cell's electrochemistry over the last step, A (incl. leak)
X_HEAT = 6  # heat generated over the last step, W
X_FLAG = 7  # 0 normal, FLAG_EMPTY (soc < 0) or FLAG_FULL (soc > 1)
# scratch rows for parallel groups, written and read inside one step
S_A = 8  # open-circuit part of the end-of-step terminal voltage, V
S_B = 9  # effective resistance over the step, ohm
S_E1 = 10  # decay factor of RC pair 1 over the step
S_E2 = 11
S_R0 = 12  # resistances with the cell's resistance factor, ohm
S_R1 = 13
S_R2 = 14
S_QEFF = 15  # capacity at the cell's temperature, A*s
S_SDF = 16  # self-discharge temperature factor
NX = 17

FLAG_EMPTY = 1.0
FLAG_FULL = 2.0

# --- p: per-cell parameters, shape (NP, n_cells) ------------------------------------------
P_Q_AS = 0  # capacity at 25 degC, A*s
P_RSCALE = 1  # resistance factor (spread and weak-cell fault), multiplies R0, R1, R2
P_SD = 2  # self-discharge at 25 degC, fraction of capacity per second
P_GLEAK = 3  # internal-short conductance across the cell, S (0 = none)
P_CTH = 4  # thermal mass, J/K
P_RTH = 5  # thermal resistance to ambient/coolant, K/W
P_THDECAY = 6  # exp(-dt / (RTH * CTH)) for the last dt (cached by the kernel)
NP = 7

# --- g: per series group, shape (NG, n_series) ----------------------------------------------
G_BLEED_G = 0  # balancing bleed conductance applied now, S (0 = switch open)
G_V = 1  # group terminal voltage at the end of the last step, V
G_IBLEED = 2  # bleed current over the last step, A
NG = 3

# --- tab: tables on a uniform (soc, temp) grid, shape (n_soc, n_temp, NT) ----------------------
T_OCV = 0  # mean of the charge and discharge OCV branches, V
T_HYST = 1  # half the gap between the branches, V (OCV = T_OCV + T_HYST * h)
T_R0 = 2
T_R1 = 3
T_R2 = 4
T_E1 = 5  # exp(-dt / tau1) at the node, for the dt this copy of the table was made for
T_E2 = 6  # exp(-dt / tau2)
T_CAP = 7  # capacity factor (1 at 25 degC); depends on temperature only
T_SD = 8  # self-discharge factor (1 at 25 degC); depends on temperature only
NT = 9

# --- m: model scalars, shape (NM,) -------------------------------------------------------------
M_SOC0 = 0
M_SOC_INV = 1  # 1 / soc step of the uniform grid
M_NSOC = 2
M_T0 = 3
M_T_INV = 4
M_NT = 5
M_GAMMA = 9  # hysteresis rate (per unit of capacity throughput)
M_ETA = 10  # coulombic efficiency on charge
M_AMBIENT = 11  # ambient / coolant temperature, degC
M_RC = 12  # RC pairs in use: 0, 1 or 2
M_HYST = 13  # 1 = hysteresis on
M_THERMAL = 14  # 1 = thermal model on (else temperatures stay constant)
M_SELFDIS = 15  # 1 = self-discharge on
M_LAST_DT = 16  # dt of the cached P_THDECAY row
NM = 17

# --- out: results of one step, shape (NO,) -------------------------------------------------------
O_VPACK = 0  # pack terminal voltage, V
O_VMIN = 1  # lowest group voltage, V
O_VMAX = 2
O_SOC_MEAN = 3
O_SOC_MIN = 4
O_SOC_MAX = 5
O_TMAX = 6  # hottest cell, degC
NO = 7
