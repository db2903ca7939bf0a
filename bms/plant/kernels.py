"""numba kernels of the pack plant: the physics in one place.

Each cell is an equivalent circuit: OCV(SOC, T) with a one-state hysteresis,
a series resistance R0 and up to two RC pairs, a lumped thermal mass against
ambient/coolant, self-discharge and an optional internal short (a leak
conductance across the cell). Parallel cells of a series group share current
by Kirchhoff's laws; a balancing bleed resistor sits across each group.

For one step of length dt each cell's current is held constant (zero-order
hold) and every state advances with its exact solution for that current,
parameters taken at the start of the step:

    v_k(t+dt) = v_k e_k + R_k (1 - e_k) i,          e_k = exp(-dt / tau_k)
    h(t+dt)   = s + (h - s) exp(-gamma |i| dt / Q),  s = -1 discharging, +1 charging
    T(t+dt)   = T_inf + (T - T_inf) exp(-dt G / C),  T_inf = T_amb + heat / G
    SOC(t+dt) = SOC - eta i dt / Q - sd f(T) dt      (eta < 1 on charge only)

with heat = i^2 R0 + sum v_k^2 / R_k + V^2 g_leak (end-of-step RC voltages) and
f(T) the Arrhenius factor of the self-discharge.

The decay factors e_k are computed at the chemistry's table nodes for the
step's dt (one exp per node per distinct dt, not per cell and step) and
interpolated like every other parameter; with constant parameters they are
exact.

A cell's end-of-step terminal voltage is affine in its current,
V = a - b i with a = OCV + M h - sum v_k e_k and b = R0 + sum R_k (1 - e_k).
In a group of parallel cells all V are equal and the cell currents, less the
leak through internal shorts and the bleed resistor, add up to the pack
current, so  V = (sum a/b - I) / (sum 1/b + sum g_leak + g_bleed).

Kernels never raise, log or allocate; Python validates their inputs once.
Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math

import numpy as np

from bms._jit import inline, kernel
from bms.plant.layout import (
    FLAG_EMPTY,
    FLAG_FULL,
    G_BLEED_G,
    G_IBLEED,
    G_V,
    M_AMBIENT,
    M_ETA,
    M_GAMMA,
    M_HYST,
    M_LAST_DT,
    M_NSOC,
    M_NT,
    M_RC,
    M_SELFDIS,
    M_SOC0,
    M_SOC_INV,
    M_T0,
    M_T_INV,
    M_THERMAL,
    O_SOC_MAX,
    O_SOC_MEAN,
    O_SOC_MIN,
    O_TMAX,
    O_VMAX,
    O_VMIN,
    O_VPACK,
    P_CTH,
    P_GLEAK,
    P_Q_AS,
    P_RSCALE,
    P_RTH,
    P_SD,
    P_THDECAY,
    S_A,
    S_B,
    S_E1,
    S_E2,
    S_QEFF,
    S_R0,
    S_R1,
    S_R2,
    S_SDF,
    T_CAP,
    T_E1,
    T_E2,
    T_HYST,
    T_OCV,
    T_R0,
    T_R1,
    T_R2,
    T_SD,
    X_FLAG,
    X_H,
    X_HEAT,
    X_I,
    X_SOC,
    X_TEMP,
    X_V1,
    X_V2,
)

U1 = np.uint64(1)
TINY_V = 1e-30  # an RC voltage below this is zero (far below any ADC step)


@inline
def exp_neg(z):
    """exp(-z) for z >= 0; below 0.01 a degree-6 Taylor polynomial, exact to double
    precision (remainder z^7/7! < 2e-18), evaluated in Estrin's scheme (short latency)."""
    if z < 0.01:
        z2 = z * z
        return ((1.0 - z) + z2 * (0.5 - z * (1.0 / 6.0))) + (z2 * z2) * (
            (1.0 / 24.0 - z * (1.0 / 120.0)) + z2 * (1.0 / 720.0)
        )
    return math.exp(-z)


@inline
def clamp(v, lo, hi):
    """``v`` limited to [lo, hi] with plain comparisons (no NaN bookkeeping)."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@inline
def grid_cell(value, origin, inv_step, n):
    """Grid interval holding ``value`` (clamped to the table) and the weight in it.

    The index is unsigned: numba then skips the negative-index wraparound on every
    table access (28 per cell and step).
    """
    f = (value - origin) * inv_step
    fi = math.floor(clamp(f, 0.0, n - 2.0))
    return np.uint64(fi), f - fi


@inline
def bilinear(w00, w10, w01, w11, v00, v10, v01, v11):
    """Weighted sum of the four corner values of a grid cell."""
    return w00 * v00 + w10 * v10 + w01 * v01 + w11 * v11


@kernel
def step_kernel(x, p, g, tab, m, current_a, dt_s, n_par, out):
    """Advance the pack by ``dt_s`` at pack current ``current_a`` (A, + = discharge).

    ``tab`` must hold the decay factors for this ``dt_s`` (:meth:`KernelTables.for_dt`).
    Writes the new state into ``x``, the group voltages into ``g`` and the pack
    figures into ``out`` (O_* slots); returns the pack terminal voltage, V.

    Four loops, each over every cell or group: pass 1 reads every cell's parameters
    at the start of the step into the scratch rows (S_*); the group loop solves each
    group's terminal voltage in closed form and the cell currents (X_I); pass 2 moves
    every cell on (no calls, so the compiler vectorizes it); then the hysteresis (its
    exp kept apart) and the flags and pack figures. The per-cell code indexes the
    arrays here, in this one function: handing an array to a helper costs a
    reference-count call per cell.

    Lookups: bilinear between the four nearest nodes of the uniform grid. Temperature
    is clamped to the tables; SOC is clamped for every parameter but the OCV, which
    is extrapolated linearly from the end segment (an over-discharged cell's voltage
    keeps falling) and, with its hysteresis offset, held at or above 0 V.
    """
    n_series = g.shape[1]
    n_cells = x.shape[1]
    s0 = m[M_SOC0]
    sinv = m[M_SOC_INV]
    ns = m[M_NSOC]
    t0 = m[M_T0]
    tinv = m[M_T_INV]
    nt = m[M_NT]
    rc = int(m[M_RC])
    hyst_on = m[M_HYST] > 0.0
    thermal_on = m[M_THERMAL] > 0.0
    selfdis_on = m[M_SELFDIS] > 0.0
    gamma = m[M_GAMMA]
    eta = m[M_ETA]
    amb = m[M_AMBIENT]
    if dt_s != m[M_LAST_DT]:
        # cells share their thermal time constant unless configured apart: one exp for
        # each run of equal ones (the same expression, so the same value)
        tau_last = math.nan
        decay = 1.0
        for c in range(n_cells):
            tau = p[P_RTH, c] * p[P_CTH, c]
            if tau != tau_last:
                decay = math.exp(-dt_s / tau)
                tau_last = tau
            p[P_THDECAY, c] = decay
        m[M_LAST_DT] = dt_s
    v_pack = 0.0
    vmin = math.inf
    vmax = -math.inf
    soc_sum = 0.0
    soc_min = math.inf
    soc_max = -math.inf
    tmax = -math.inf
    # ---- pass 1: parameters at the start of the step
    for c in range(n_cells):
        i, ws = grid_cell(x[X_SOC, c], s0, sinv, ns)
        j, wt = grid_cell(x[X_TEMP, c], t0, tinv, nt)
        i1 = i + U1
        j1 = j + U1
        wc = clamp(ws, 0.0, 1.0)
        wt = clamp(wt, 0.0, 1.0)
        w00 = (1.0 - wc) * (1.0 - wt)
        w10 = wc * (1.0 - wt)
        w01 = (1.0 - wc) * wt
        w11 = wc * wt
        o0 = tab[i, j, T_OCV] + ws * (tab[i1, j, T_OCV] - tab[i, j, T_OCV])
        o1 = tab[i, j1, T_OCV] + ws * (tab[i1, j1, T_OCV] - tab[i, j1, T_OCV])
        a = o0 + wt * (o1 - o0)  # OCV, SOC extrapolated
        if hyst_on:
            a += x[X_H, c] * bilinear(
                w00,
                w10,
                w01,
                w11,
                tab[i, j, T_HYST],
                tab[i1, j, T_HYST],
                tab[i, j1, T_HYST],
                tab[i1, j1, T_HYST],
            )
        if a < 0.0:  # a dead cell's open-circuit voltage stops at 0 V
            a = 0.0
        rs = p[P_RSCALE, c]
        b = rs * bilinear(
            w00,
            w10,
            w01,
            w11,
            tab[i, j, T_R0],
            tab[i1, j, T_R0],
            tab[i, j1, T_R0],
            tab[i1, j1, T_R0],
        )
        x[S_R0, c] = b
        if rc >= 1:
            e1 = bilinear(
                w00,
                w10,
                w01,
                w11,
                tab[i, j, T_E1],
                tab[i1, j, T_E1],
                tab[i, j1, T_E1],
                tab[i1, j1, T_E1],
            )
            r1 = rs * bilinear(
                w00,
                w10,
                w01,
                w11,
                tab[i, j, T_R1],
                tab[i1, j, T_R1],
                tab[i, j1, T_R1],
                tab[i1, j1, T_R1],
            )
            a -= x[X_V1, c] * e1
            b += r1 * (1.0 - e1)
            x[S_E1, c] = e1
            x[S_R1, c] = r1
        if rc >= 2:
            e2 = bilinear(
                w00,
                w10,
                w01,
                w11,
                tab[i, j, T_E2],
                tab[i1, j, T_E2],
                tab[i, j1, T_E2],
                tab[i1, j1, T_E2],
            )
            r2 = rs * bilinear(
                w00,
                w10,
                w01,
                w11,
                tab[i, j, T_R2],
                tab[i1, j, T_R2],
                tab[i, j1, T_R2],
                tab[i1, j1, T_R2],
            )
            a -= x[X_V2, c] * e2
            b += r2 * (1.0 - e2)
            x[S_E2, c] = e2
            x[S_R2, c] = r2
        # temperature-only columns: the same along soc, so one row is enough
        capf = tab[i, j, T_CAP] + wt * (tab[i, j1, T_CAP] - tab[i, j, T_CAP])
        x[S_QEFF, c] = p[P_Q_AS, c] * capf
        if selfdis_on:
            x[S_SDF, c] = tab[i, j, T_SD] + wt * (tab[i, j1, T_SD] - tab[i, j, T_SD])
        x[S_A, c] = a
        x[S_B, c] = b
    # ---- every group: one terminal voltage, currents adding up to the pack current
    for s in range(n_series):
        base = s * n_par
        gb = g[G_BLEED_G, s]
        if n_par == 1 and gb == 0.0 and p[P_GLEAK, base] == 0.0:
            v = x[S_A, base] - x[S_B, base] * current_a  # a series string: no rounding
            x[X_I, base] = current_a
            x[S_A, base] = v
        else:
            sum_ab = 0.0
            sum_inv_b = 0.0
            sum_gl = 0.0
            for c in range(base, base + n_par):
                inv_b = 1.0 / x[S_B, c]
                sum_ab += x[S_A, c] * inv_b
                sum_inv_b += inv_b
                sum_gl += p[P_GLEAK, c]
            v = (sum_ab - current_a) / (sum_inv_b + sum_gl + gb)
            for c in range(base, base + n_par):
                x[X_I, c] = (x[S_A, c] - v) / x[S_B, c]
                x[S_A, c] = v  # from here on S_A holds the group voltage
        g[G_V, s] = v
        g[G_IBLEED, s] = v * gb
        v_pack += v
        vmin = v if v < vmin else vmin
        vmax = v if v > vmax else vmax
    # ---- pass 2: every cell over the step at its own current
    for c in range(n_cells):
        i_c = x[X_I, c]
        v = x[S_A, c]
        heat = i_c * i_c * x[S_R0, c]
        if rc >= 1:
            e1 = x[S_E1, c]
            r1 = x[S_R1, c]
            v1 = x[X_V1, c] * e1 + r1 * (1.0 - e1) * i_c
            if abs(v1) < TINY_V:  # relaxed: flush before it decays into slow subnormals
                v1 = 0.0
            x[X_V1, c] = v1
            heat += v1 * v1 / r1
        if rc >= 2:
            e2 = x[S_E2, c]
            r2 = x[S_R2, c]
            v2 = x[X_V2, c] * e2 + r2 * (1.0 - e2) * i_c
            if abs(v2) < TINY_V:
                v2 = 0.0
            x[X_V2, c] = v2
            heat += v2 * v2 / r2
        gl = p[P_GLEAK, c]
        if gl > 0.0:
            heat += v * v * gl
        inv_q = 1.0 / x[S_QEFF, c]
        dq = i_c * dt_s
        if i_c < 0.0:
            dq *= eta
        soc = x[X_SOC, c] - dq * inv_q
        if selfdis_on:
            soc -= p[P_SD, c] * x[S_SDF, c] * dt_s
        temp = x[X_TEMP, c]
        if thermal_on:
            t_inf = amb + heat * p[P_RTH, c]
            temp = t_inf + (temp - t_inf) * p[P_THDECAY, c]
            x[X_TEMP, c] = temp
        x[X_SOC, c] = soc
        x[X_HEAT, c] = heat
    # ---- hysteresis (its exp keeps it out of the loop above)
    if hyst_on:
        for c in range(n_cells):
            i_c = x[X_I, c]
            if i_c != 0.0:
                target = -1.0 if i_c > 0.0 else 1.0
                x[X_H, c] = target + (x[X_H, c] - target) * exp_neg(
                    gamma * abs(i_c) * dt_s / x[S_QEFF, c]
                )
    # ---- flags and pack figures
    for c in range(n_cells):
        soc = x[X_SOC, c]
        temp = x[X_TEMP, c]
        x[X_FLAG, c] = FLAG_EMPTY if soc < 0.0 else (FLAG_FULL if soc > 1.0 else 0.0)
        soc_sum += soc
        soc_min = soc if soc < soc_min else soc_min
        soc_max = soc if soc > soc_max else soc_max
        tmax = temp if temp > tmax else tmax
    out[O_VPACK] = v_pack
    out[O_VMIN] = vmin
    out[O_VMAX] = vmax
    out[O_SOC_MEAN] = soc_sum / n_cells
    out[O_SOC_MIN] = soc_min
    out[O_SOC_MAX] = soc_max
    out[O_TMAX] = tmax
    return v_pack


@kernel
def step_n_kernel(x, p, g, tab, m, current_a, dt_s, n_steps, n_par, out):
    """``n_steps`` steps of ``dt_s`` at the same pack current (sub-steps of a long step)."""
    v = 0.0
    for _ in range(n_steps):
        v = step_kernel(x, p, g, tab, m, current_a, dt_s, n_par, out)
    return v


@kernel
def run_kernel(x, p, g, tab, m, current_a, dt_s, n_par, trace, snap, snap_every):
    """Run the pack over a current profile (A, one value per step of ``dt_s``).

    ``trace`` has shape (n_steps, 1 + NO): the current, then the ``out`` slots of
    :func:`step_kernel` after each step. ``snap`` has shape (n_snap, 3, n_cells):
    SOC, temperature and current of every cell after every ``snap_every``-th
    step (n_snap may be 0). Returns the number of snapshots written.
    """
    n_steps = current_a.shape[0]
    n_cells = x.shape[1]
    n_snap = snap.shape[0]
    k = 0
    for t in range(n_steps):
        trace[t, 0] = current_a[t]
        step_kernel(x, p, g, tab, m, current_a[t], dt_s, n_par, trace[t, 1:])
        if n_snap > 0 and (t + 1) % snap_every == 0 and k < n_snap:
            for c in range(n_cells):
                snap[k, 0, c] = x[X_SOC, c]
                snap[k, 1, c] = x[X_TEMP, c]
                snap[k, 2, c] = x[X_I, c]
            k += 1
    return k


@kernel
def bleed_kernel(on, g_bleed, bleed_on, g):
    """Set the balancing switches: ``bleed_on`` = ``on`` and each group's bleed
    conductance ``g[G_BLEED_G]``, ``g_bleed`` (S) where the switch is closed, else 0."""
    for s in range(on.shape[0]):
        bleed_on[s] = on[s]
        g[G_BLEED_G, s] = g_bleed if on[s] else 0.0
