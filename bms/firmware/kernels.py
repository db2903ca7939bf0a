"""numba kernels of the emulated BMS firmware: per-group work over arrays.

The firmware's cell model is the chemistry file's equivalent circuit with the
nominal parameters (no spread: a BMS does not know its cells individually); a
series group of P cells is one cell of P times the capacity and 1/P the
resistance. It reads the chemistry's uniform-grid tables (layout of
:mod:`bms.plant.layout`, the shared cell-model format), never the plant's state.
Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math

import numpy as np

from bms._jit import inline, kernel, shared
from bms.plant.layout import T_E1, T_E2, T_HYST, T_OCV, T_R0, T_R1, T_R2

# prm: filter parameters, shape (NPRM,)
K_S0 = 0  # soc grid origin, 1/step, size
K_SINV = 1
K_NS = 2
K_T0 = 3  # temperature grid origin, 1/step, size
K_TINV = 4
K_NT = 5
K_Q_AS = 6  # group capacity, A*s
K_RSCALE = 7  # group resistance factor (1/P)
K_GAMMA = 8  # hysteresis rate
K_ETA = 9  # coulombic efficiency on charge
K_SIG_V2 = 10  # measurement variance, V^2
K_QZ = 11  # SOC process variance per second
K_QV = 12  # RC voltage process variance per second, V^2/s
K_QH = 13  # hysteresis process variance per second
K_SIG_I2 = 14  # current-sensor variance, A^2
K_RC = 15  # RC pairs in the model
K_HYST = 16  # 1 = hysteresis state in the model
K_RREL = 17  # relative uncertainty of the model's resistances: adds (k I R)^2 to K_SIG_V2
NPRM = 18

# xs columns
E_SOC = 0
E_V1 = 1
E_V2 = 2
E_H = 3
NE = 4


@kernel
def ekf_kernel(xs, cov, tab, prm, v_meas, temp_c, current_a, dt_s, innov):
    """One predict-update step of the per-group EKF (states SOC, v1, v2, h).

    ``v_meas`` is each group's measured voltage (V) at the end of the interval (a
    non-finite one skips that group's update), ``current_a`` the measured pack
    current held over ``dt_s`` (finite: the caller's check); ``tab`` carries the
    RC decay factors for ``dt_s``. ``innov`` receives each group's innovation, V.
    """
    n = xs.shape[0]
    s0 = prm[K_S0]
    sinv = prm[K_SINV]
    ns = prm[K_NS]
    t0 = prm[K_T0]
    tinv = prm[K_TINV]
    nt = prm[K_NT]
    q_as = prm[K_Q_AS]
    rs = prm[K_RSCALE]
    gamma = prm[K_GAMMA]
    eta = prm[K_ETA]
    rc = int(prm[K_RC])
    hyst_on = prm[K_HYST] > 0.0
    i_a = current_a
    # the hysteresis decay is the same for every group (one current, one capacity)
    ah_all = 1.0
    h_target = 0.0
    if hyst_on and i_a != 0.0:
        h_target = -1.0 if i_a > 0.0 else 1.0
        ah_all = math.exp(-gamma * abs(i_a) * dt_s / q_as)
    for g in range(n):
        z = xs[g, E_SOC]
        # ---- parameters at the prior SOC and the group's temperature
        fz = (min(max(z, 0.0), 1.0) - s0) * sinv
        iz = int(min(max(math.floor(fz), 0.0), ns - 2.0))
        wz = fz - iz
        ft = (temp_c[g] - t0) * tinv
        jt = int(min(max(math.floor(ft), 0.0), nt - 2.0))
        wt = min(max(ft - jt, 0.0), 1.0)
        w00 = (1.0 - wz) * (1.0 - wt)
        w10 = wz * (1.0 - wt)
        w01 = (1.0 - wz) * wt
        w11 = wz * wt
        r0 = rs * (
            w00 * tab[iz, jt, T_R0]
            + w10 * tab[iz + 1, jt, T_R0]
            + w01 * tab[iz, jt + 1, T_R0]
            + w11 * tab[iz + 1, jt + 1, T_R0]
        )
        r1 = rs * (
            w00 * tab[iz, jt, T_R1]
            + w10 * tab[iz + 1, jt, T_R1]
            + w01 * tab[iz, jt + 1, T_R1]
            + w11 * tab[iz + 1, jt + 1, T_R1]
        )
        r2 = rs * (
            w00 * tab[iz, jt, T_R2]
            + w10 * tab[iz + 1, jt, T_R2]
            + w01 * tab[iz, jt + 1, T_R2]
            + w11 * tab[iz + 1, jt + 1, T_R2]
        )
        e1 = (
            w00 * tab[iz, jt, T_E1]
            + w10 * tab[iz + 1, jt, T_E1]
            + w01 * tab[iz, jt + 1, T_E1]
            + w11 * tab[iz + 1, jt + 1, T_E1]
        )
        e2 = (
            w00 * tab[iz, jt, T_E2]
            + w10 * tab[iz + 1, jt, T_E2]
            + w01 * tab[iz, jt + 1, T_E2]
            + w11 * tab[iz + 1, jt + 1, T_E2]
        )
        if rc < 1:
            e1 = 1.0
            r1 = 0.0
        if rc < 2:
            e2 = 1.0
            r2 = 0.0
        # ---- predict
        dq = i_a * dt_s
        if i_a < 0.0:
            dq *= eta
        z = z - dq / q_as
        v1 = e1 * xs[g, E_V1] + r1 * (1.0 - e1) * i_a
        v2 = e2 * xs[g, E_V2] + r2 * (1.0 - e2) * i_a
        h = xs[g, E_H]
        ah = ah_all
        if hyst_on and i_a != 0.0:
            h = h_target + (h - h_target) * ah
        a = (1.0, e1, e2, ah)
        b = (-dt_s / q_as, r1 * (1.0 - e1), r2 * (1.0 - e2), 0.0)
        qd = (prm[K_QZ] * dt_s, prm[K_QV] * dt_s, prm[K_QV] * dt_s, prm[K_QH] * dt_s)
        sig_i2 = prm[K_SIG_I2]
        for r in range(NE):
            for c in range(NE):
                cov[g, r, c] = a[r] * cov[g, r, c] * a[c] + b[r] * b[c] * sig_i2
            cov[g, r, r] += qd[r]
        # ---- measurement model at the predicted SOC
        fz = (z - s0) * sinv
        iz = int(min(max(math.floor(fz), 0.0), ns - 2.0))
        wz = fz - iz
        wzc = min(max(wz, 0.0), 1.0)
        lo = tab[iz, jt, T_OCV] + wt * (tab[iz, jt + 1, T_OCV] - tab[iz, jt, T_OCV])
        hi = tab[iz + 1, jt, T_OCV] + wt * (tab[iz + 1, jt + 1, T_OCV] - tab[iz + 1, jt, T_OCV])
        ocv = lo + wz * (hi - lo)
        docv = (hi - lo) * sinv
        mlo = tab[iz, jt, T_HYST] + wt * (tab[iz, jt + 1, T_HYST] - tab[iz, jt, T_HYST])
        mhi = tab[iz + 1, jt, T_HYST] + wt * (tab[iz + 1, jt + 1, T_HYST] - tab[iz + 1, jt, T_HYST])
        mh = mlo + wzc * (mhi - mlo)
        dm = (mhi - mlo) * sinv if 0.0 < wz < 1.0 else 0.0
        if not hyst_on:
            mh = 0.0
            dm = 0.0
        y_pred = ocv + mh * h - v1 - v2 - r0 * i_a
        cz = docv + dm * h
        cvec = (cz, -1.0 if rc >= 1 else 0.0, -1.0 if rc >= 2 else 0.0, mh)
        # ---- update (scalar measurement)
        pc0 = 0.0
        pc1 = 0.0
        pc2 = 0.0
        pc3 = 0.0
        for c in range(NE):
            pc0 += cov[g, 0, c] * cvec[c]
            pc1 += cov[g, 1, c] * cvec[c]
            pc2 += cov[g, 2, c] * cvec[c]
            pc3 += cov[g, 3, c] * cvec[c]
        pc = (pc0, pc1, pc2, pc3)
        # measurement noise: the ADC, plus the model's resistance error times the current
        ir = prm[K_RREL] * (r0 + r1 + r2) * i_a
        s_var = cvec[0] * pc0 + cvec[1] * pc1 + cvec[2] * pc2 + cvec[3] * pc3 + prm[K_SIG_V2]
        s_var += ir * ir
        e = v_meas[g] - y_pred
        if not math.isfinite(e):  # no valid reading: prediction only
            innov[g] = 0.0
            xs[g, E_SOC] = min(max(z, -0.05), 1.05)
            xs[g, E_V1] = v1
            xs[g, E_V2] = v2
            xs[g, E_H] = h
            continue
        innov[g] = e
        k0 = pc0 / s_var
        k1 = pc1 / s_var
        k2 = pc2 / s_var
        k3 = pc3 / s_var
        kv = (k0, k1, k2, k3)
        z += k0 * e
        v1 += k1 * e
        v2 += k2 * e
        h += k3 * e
        for r in range(NE):
            for c in range(NE):
                cov[g, r, c] -= kv[r] * pc[c]
        # keep the covariance symmetric against rounding
        for r in range(NE):
            for c in range(r + 1, NE):
                m = 0.5 * (cov[g, r, c] + cov[g, c, r])
                cov[g, r, c] = m
                cov[g, c, r] = m
        xs[g, E_SOC] = min(max(z, -0.05), 1.05)
        xs[g, E_V1] = v1
        xs[g, E_V2] = v2
        xs[g, E_H] = min(max(h, -1.0), 1.0)


@kernel
def coulomb_kernel(soc, current_a, dt_s, q_as, eta):
    """Charge counting for every group: SOC -= eta I dt / Q (eta on charge only)."""
    dq = current_a * dt_s
    if current_a < 0.0:
        dq *= eta
    for g in range(soc.shape[0]):
        soc[g] -= dq / q_as[g]


@kernel
def select_bleeders(demand, priority, module_groups, max_per_module, mask):
    """Bleed switches to close: in each module of ``module_groups`` series groups, the
    groups that ask (``demand``) with the highest ``priority``, at most
    ``max_per_module`` of them (the module's heat and its balancing driver limit)."""
    n = demand.shape[0]
    for g in range(n):
        mask[g] = False
    for start in range(0, n, module_groups):
        stop = min(start + module_groups, n)
        for _ in range(max_per_module):
            best = -1
            best_p = -math.inf
            for g in range(start, stop):
                if demand[g] and not mask[g] and priority[g] > best_p:
                    best = g
                    best_p = priority[g]
            if best < 0:
                break
            mask[best] = True


@inline
def debounce_row(value, limits, above, debounce_s, clear_s, timers, g, level, dt_s):
    """Row ``g`` of :func:`debounce_kernel`: updates ``timers[g]``, returns the level
    after this period; ``level`` is the row's level before it."""
    lvl = 0
    for k in range(3):
        hit = value > limits[k] if above else value < limits[k]
        t = timers[g, k]
        if hit:
            t = t + dt_s if t >= 0.0 else dt_s
        else:
            t = t - dt_s if t <= 0.0 else -dt_s
        timers[g, k] = t
        if t >= debounce_s[k] - 1e-9:
            lvl = k + 1
        elif t < 0.0 and -t < clear_s and level >= k + 1:
            lvl = k + 1  # held until clear for clear_s
    return lvl


@kernel
def debounce_kernel(values, limits, above, debounce_s, clear_s, timers, levels, dt_s):
    """Per-group three-level limit check with debounce, for every series group.

    ``limits`` and ``debounce_s`` hold (warning, alarm, fault); ``above`` says whether
    the limit is an upper one. ``timers`` (n, 3) accumulate how long each level's
    condition has held (positive) or has been clear (negative); ``levels`` (n,)
    receives the highest level whose condition has held for its debounce time (0
    none, 1 warning, 2 alarm, 3 fault). A level drops once its condition has been
    clear for ``clear_s``; latching of faults is the caller's rule.
    """
    for g in range(values.shape[0]):
        levels[g] = debounce_row(
            values[g], limits, above, debounce_s, clear_s, timers, g, levels[g], dt_s
        )


# ---- protections: every check of the 10 ms task in one call (protection_kernel)
# lim: one row per limit check
L_LIMITS = 0  # columns 0..2: warning, alarm, fault
L_DEBOUNCE_S = 3  # columns 3..5: their debounce times, s
L_CLEAR_S = 6  # a warning or alarm drops after its condition has been clear this long
L_ABOVE = 7  # 1: trips above the limits, 0: below
NL = 8
# wiring: one row per limit check, (quantity, condition)
Q_CELL_V = 0  # every group's cell voltage; an implausible one counts as the median of
# the plausible ones (3.0 V without one)
Q_TEMP_MAX_C = 1  # hottest plausible temperature reading
Q_TEMP_MIN_C = 2  # coldest plausible temperature reading
Q_CHARGE_A = 3  # charge current (minus the measured current)
Q_DISCHARGE_A = 4  # discharge current (the measured current)
Q_SPREAD_V = 5  # highest minus lowest plausible cell voltage (0 without one)
Q_SINCE_COMMAND_S = 6  # time since the vehicle's last valid command
ALWAYS = 0
CHARGING = 1  # current below -PR_CHARGE_A
DISCHARGING = 2  # not charging (also with a current that is not a number)
# plausibility checks, after the limit checks in ``levels``
PL_CELL_VOLTAGE = 0  # a cell voltage outside the plausible range
PL_TEMP_SENSOR = 1  # a temperature outside the plausible range (open or short)
PL_TEMP_STUCK = 2  # a temperature frozen for PR_STUCK_S while another moves
PL_CURRENT_OFFSET = 3  # a current above PR_OFFSET_A with the mains open
PL_CURRENT = 4  # a current that is not a finite number
NPL = 5
# prm
PR_CELL_V_LO = 0  # plausible cell voltage: strictly between these, V
PR_CELL_V_HI = 1
PR_TEMP_LO_C = 2  # plausible temperature: strictly between these, degC
PR_TEMP_HI_C = 3
PR_STUCK_S = 4
PR_OFFSET_A = 5
PR_PLAUSIBILITY_S = 6  # debounce of every plausibility check
PR_CHARGE_A = 7
NPR = 8


@inline
def gather_inside(x, lo, hi, out):  # pragma: no cover - numba
    """The values of ``x`` strictly between ``lo`` and ``hi`` (not NaN), in order, into the
    start of ``out``; returns how many."""
    n = 0
    for i in range(x.shape[0]):
        v = x[i]
        if v > lo and v < hi:
            out[n] = v
            n += 1
    return n


def protection_buffers(n: int, n_t: int, n_checks: int) -> tuple[np.ndarray, np.ndarray]:
    """The float and the int buffer that hold the parameters and the state of
    :func:`protection_kernel` for ``n`` groups, ``n_t`` temperature sensors and
    ``n_checks`` limit checks, zeroed (:func:`protection_views` takes them apart)."""
    floats = np.zeros(NPR + n_checks * NL + n_checks * n * 3 + 2 * n_t + NPL + n)
    ints = np.zeros(n_checks * 2 + n_checks * n + n_checks + NPL, dtype=np.int64)
    return floats, ints


@shared
def protection_views(fbuf, ibuf, n, n_t, n_checks):
    """``prm, lim, wiring, timers, row_levels, t_last, t_frozen_s, plaus_s, scratch,
    levels`` (see :func:`protection_kernel`) as views of the two buffers: the kernel
    takes two arrays instead of ten (a numba call costs about 0.1 us per array it is
    given, and this one runs every 10 ms)."""
    a = NPR
    b = a + n_checks * NL
    c = b + n_checks * n * 3
    d = c + n_t
    e = d + n_t
    f = e + NPL
    j = n_checks * 2
    k = j + n_checks * n
    return (
        fbuf[:a],
        fbuf[a:b].reshape((n_checks, NL)),
        ibuf[:j].reshape((n_checks, 2)),
        fbuf[b:c].reshape((n_checks, n, 3)),
        ibuf[j:k].reshape((n_checks, n)),
        fbuf[c:d],
        fbuf[d:e],
        fbuf[e:f],
        fbuf[f : f + n],
        ibuf[k:],
    )


@kernel
def protection_kernel(v, t, current_a, since_command_s, mains_open, dt_s, fbuf, ibuf, n_checks):
    """Every protection check of one period on one measurement.

    ``v`` (n,) cell voltages, ``t`` (n_t,) temperatures, ``mains_open`` whether no
    main contactor reports closed. Limit check ``c`` compares quantity
    ``wiring[c, 0]`` with the limits of ``lim[c]`` (:func:`debounce_row`; a
    ``Q_CELL_V`` check once per group) while condition ``wiring[c, 1]`` holds and
    the quantity has a plausible reading; otherwise it idles: its condition
    counts as clear and its level is 0. ``timers`` (n_checks, n, 3) and
    ``row_levels`` (n_checks, n) are the per-row debounce state (row 0 only for
    a single-value check). A plausibility check is a fault once its condition
    has held for ``PR_PLAUSIBILITY_S`` (timers ``plaus_s``). ``t_last`` and
    ``t_frozen_s`` hold each temperature's last reading and how long it has not
    moved; ``scratch`` (n,) is work space. ``levels`` (n_checks + NPL) receives
    the level of every check (0 ok .. 3 fault; the highest of its groups).

    Returns (levels changed, highest level, group of the highest voltage, group
    of the lowest), the groups as ``np.argmax`` and ``np.argmin`` of ``v`` (the
    first not-a-number if any).

    ``prm`` to ``levels`` are views of ``fbuf`` and ``ibuf``
    (:func:`protection_views`).
    """
    n = v.shape[0]
    n_t = t.shape[0]
    prm, lim, wiring, timers, row_levels, t_last, t_frozen_s, plaus_s, scratch, levels = (
        protection_views(fbuf, ibuf, n, n_t, n_checks)
    )
    # ---- cell voltages: plausibility, plausible extremes, worst groups
    v_lo = prm[PR_CELL_V_LO]
    v_hi = prm[PR_CELL_V_HI]
    n_ok = 0
    ok_max = -math.inf
    ok_min = math.inf
    i_max = 0
    i_min = 0
    i_nan = -1
    for g in range(n):
        x = v[g]
        if x > v_lo and x < v_hi:
            n_ok += 1
            ok_max = max(ok_max, x)
            ok_min = min(ok_min, x)
        if i_nan < 0:
            if math.isnan(x):
                i_nan = g
            else:
                if x > v[i_max]:
                    i_max = g
                if x < v[i_min]:
                    i_min = g
    if i_nan >= 0:
        i_max = i_nan
        i_min = i_nan
    spread = ok_max - ok_min if n_ok > 0 else 0.0
    # an implausible reading is a sensing fault, not an over- or under-voltage
    fill = 3.0
    if 0 < n_ok < n:
        gather_inside(v, v_lo, v_hi, scratch)
        fill = np.median(scratch[:n_ok])  # a copy, only while a reading is implausible
    # ---- temperatures: plausible extremes, frozen readings
    t_lo = prm[PR_TEMP_LO_C]
    t_hi = prm[PR_TEMP_HI_C]
    t_ok = 0
    t_max = -math.inf
    t_min = math.inf
    n_stuck = 0
    for s in range(n_t):
        x = t[s]
        if x > t_lo and x < t_hi:
            t_ok += 1
            t_max = max(t_max, x)
            t_min = min(t_min, x)
        t_frozen_s[s] = t_frozen_s[s] + dt_s if x == t_last[s] else 0.0
        t_last[s] = x
        if t_frozen_s[s] >= prm[PR_STUCK_S]:
            n_stuck += 1
    frozen = n_t >= 2 and 0 < n_stuck < n_t
    # ---- limit checks
    charging = current_a < -prm[PR_CHARGE_A]
    changed = 0
    worst = 0
    for c in range(n_checks):
        q = wiring[c, 0]
        when = wiring[c, 1]
        if q == Q_TEMP_MAX_C:
            value = t_max
        elif q == Q_TEMP_MIN_C:
            value = t_min
        elif q == Q_CHARGE_A:
            value = -current_a
        elif q == Q_DISCHARGE_A:
            value = current_a
        elif q == Q_SPREAD_V:
            value = spread
        elif q == Q_SINCE_COMMAND_S:
            value = since_command_s
        else:
            value = 0.0  # per group, below
        applies = (
            when == ALWAYS
            or (when == CHARGING and charging)
            or (when == DISCHARGING and not charging)
        )
        if q == Q_TEMP_MAX_C or q == Q_TEMP_MIN_C:
            applies = applies and t_ok > 0
        limits = lim[c, L_LIMITS : L_LIMITS + 3]
        debounce_s = lim[c, L_DEBOUNCE_S : L_DEBOUNCE_S + 3]
        clear_s = lim[c, L_CLEAR_S]
        above = lim[c, L_ABOVE] > 0.0
        tc = timers[c]
        lc = row_levels[c]
        rows = n if q == Q_CELL_V else 1
        # a value on the safe side of every limit leaves a row at level 0 where it was:
        # its timers count the time clear, as debounce_row would (the usual case)
        if above:
            safe = min(limits[0], min(limits[1], limits[2]))
        else:
            safe = max(limits[0], max(limits[1], limits[2]))
        lvl = 0
        for g in range(rows):
            if q == Q_CELL_V:
                value = v[g]
                if not (value > v_lo and value < v_hi):
                    value = fill
            quiet = not applies or (lc[g] == 0 and (value <= safe if above else value >= safe))
            if quiet:  # (not applying: the condition counts as clear, the level drops at once)
                for k in range(3):
                    tc[g, k] = min(tc[g, k], 0.0) - dt_s
                lc[g] = 0
                continue
            lc[g] = debounce_row(value, limits, above, debounce_s, clear_s, tc, g, lc[g], dt_s)
            lvl = max(lvl, lc[g])
        if levels[c] != lvl:
            changed += 1
            levels[c] = lvl
        worst = max(worst, lvl)
    # ---- plausibility checks
    bad = (  # in the order of PL_*
        n_ok < n,  # PL_CELL_VOLTAGE
        t_ok < n_t,  # PL_TEMP_SENSOR
        frozen,  # PL_TEMP_STUCK
        mains_open and abs(current_a) > prm[PR_OFFSET_A],  # PL_CURRENT_OFFSET
        not math.isfinite(current_a),  # PL_CURRENT
    )
    for k in range(NPL):
        plaus_s[k] = plaus_s[k] + dt_s if bad[k] else 0.0
        lvl = 3 if bad[k] and plaus_s[k] >= prm[PR_PLAUSIBILITY_S] - 1e-9 else 0
        if levels[n_checks + k] != lvl:
            changed += 1
            levels[n_checks + k] = lvl
        worst = max(worst, lvl)
    return changed, worst, i_max, i_min


# ---- the estimation task (every 100 ms): each helper replaces a chain of numpy calls on
# arrays of a few hundred values, where every call would cost more than its arithmetic


@inline
def py_min(a, b):
    """Python's ``min(a, b)`` for floats: ``a`` unless ``b < a`` (so a NaN ``a`` wins)."""
    return b if b < a else a


@inline
def py_max(a, b):
    """Python's ``max(a, b)`` for floats: ``a`` unless ``b > a``."""
    return b if b > a else a


@inline
def interp(x, xp, fp):
    """``np.interp(x, xp, fp)`` for one value ``x`` on a strictly increasing grid ``xp``,
    with numpy's arithmetic (bit for bit); numba's own ``np.interp`` checks its
    arguments on every call, which costs more than the interpolation. A NaN ``x``
    takes numpy's rules through it."""
    n = xp.shape[0]
    if x > xp[n - 1]:
        return fp[n - 1]
    if x < xp[0]:
        return fp[0]
    if math.isnan(x):
        return np.interp(x, xp, fp)
    # the last j with xp[j] <= x: a first guess as if the grid were uniform (it is, for
    # the tables), then step to it
    j = int((x - xp[0]) / (xp[n - 1] - xp[0]) * (n - 1)) if n > 1 else 0
    j = min(max(j, 0), n - 1)
    while j > 0 and xp[j] > x:
        j -= 1
    while j < n - 1 and xp[j + 1] <= x:
        j += 1
    if j == n - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    y = slope * (x - xp[j]) + fp[j]
    if math.isnan(y):  # numpy's second try, from the upper end of the interval
        y = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(y) and fp[j] == fp[j + 1]:
            y = fp[j]
    return y


@kernel
def group_temps_kernel(temp_c, sensor_of_group, lo_c, hi_c, scratch, out):
    """Each group's temperature from its sensor: ``out[g] = temp_c[sensor_of_group[g]]``.

    A reading not strictly between ``lo_c`` and ``hi_c`` (not a number, an open or
    shorted sensor) is replaced by the median of the valid readings (25 degC when
    none is valid). ``scratch`` (n_sensors,) is work space. Returns the number of
    invalid readings.
    """
    n_t = temp_c.shape[0]
    n_ok = gather_inside(temp_c, lo_c, hi_c, scratch)
    fill = 25.0
    if 0 < n_ok < n_t:
        fill = np.median(scratch[:n_ok])  # a copy, only while a reading is invalid
    for g in range(sensor_of_group.shape[0]):
        x = temp_c[sensor_of_group[g]]
        out[g] = x if (n_ok == n_t or (x > lo_c and x < hi_c)) else fill
    return n_t - n_ok


@kernel
def soc_summary_kernel(soc, soc_grid, energy_grid):
    """Lowest, highest and mean SOC of the groups, and the energy they hold above 0 %
    SOC per unit capacity: the sum of ``np.interp(clip(soc, 0, 1), soc_grid,
    energy_grid)``. A NaN SOC makes every figure NaN (as numpy's reductions do).
    Sums run in order (numpy sums pairwise: the two differ by float rounding)."""
    n = soc.shape[0]
    lo = math.inf
    hi = -math.inf
    total = 0.0
    energy = 0.0
    for g in range(n):
        z = soc[g]
        lo = min(lo, z)
        hi = max(hi, z)
        total += z
        energy += interp(min(max(z, 0.0), 1.0), soc_grid, energy_grid)
    if math.isnan(total):
        lo = math.nan
        hi = math.nan
    return lo, hi, total / n, energy


@kernel
def bled_charge_kernel(v, temp_c, mask, resistor_ohm, duty, dt_s, scratch, bled_as):
    """The charge each closed bleed switch drew over the interval that ended, A*s:
    ``bled_as[g] = v[g] / resistor_ohm * duty * dt_s`` where ``mask[g]``, else 0.

    A cell voltage that is not finite counts at the median of the finite ones (0 V
    when none is). ``scratch`` (n,) is work space. Returns (number of voltages not
    finite, lowest voltage, highest temperature: NaN if one is NaN, -inf without
    sensors), what decides whether balancing may go on.
    """
    n = v.shape[0]
    n_ok = 0
    v_min = math.inf
    for g in range(n):
        x = v[g]
        if math.isfinite(x):
            scratch[n_ok] = x
            n_ok += 1
            v_min = min(v_min, x)
    fill = 0.0
    if 0 < n_ok < n:
        fill = np.median(scratch[:n_ok])
    for g in range(n):
        x = v[g]
        if not math.isfinite(x):
            x = fill
        bled_as[g] = x / resistor_ohm * duty * dt_s if mask[g] else 0.0
    t_max = -math.inf
    for s in range(temp_c.shape[0]):
        x = temp_c[s]
        if math.isnan(x):
            t_max = math.nan
            break
        t_max = max(t_max, x)
    return n - n_ok, v_min, t_max


@kernel
def soc_excess_kernel(soc, capacity_as, threshold, remaining_as, demand, priority):
    """SOC balancing's demand: once every group's charge target is bled (none left
    above 0), a new target ``(soc - min soc) * capacity_as`` per group when the
    largest excess passes ``threshold`` (none with a NaN SOC). Each group with charge
    left to bleed asks (``demand``), the most left first (``priority``)."""
    n = soc.shape[0]
    busy = False
    for g in range(n):
        if remaining_as[g] > 0.0:
            busy = True
            break
    if not busy:
        lo = math.inf
        has_nan = False
        for g in range(n):
            lo = min(lo, soc[g])
            has_nan = has_nan or math.isnan(soc[g])
        top = -math.inf
        for g in range(n):
            top = max(top, soc[g] - lo)
        start = top > threshold and not has_nan
        for g in range(n):
            remaining_as[g] = (soc[g] - lo) * capacity_as if start else 0.0
    for g in range(n):
        demand[g] = remaining_as[g] > 0.0
        priority[g] = remaining_as[g]


# current limits: curve rows of ``curve_x``/``curve_y`` (the tables of CurrentLimitConfig,
# each ``curve_n[k]`` points long) and the taper windows in ``taper_v``
LC_CHARGE_TEMP = 0
LC_CHARGE_SOC = 1
LC_DISCHARGE_TEMP = 2
LC_DISCHARGE_SOC = 3
NLC = 4
TP_CHARGE_START = 0
TP_CHARGE_END = 1
TP_DISCHARGE_START = 2
TP_DISCHARGE_END = 3


@inline
def taper(v, start, end):
    """1 before ``start``, 0 past ``end``, linear between (either direction)."""
    return py_min(py_max((v - end) / (start - end), 0.0), 1.0)


@inline
def finite_range(x):  # pragma: no cover - numba
    """The lowest and highest finite value of ``x`` (Python's ``min``/``max``); (inf, -inf)
    when none is finite."""
    lo = math.inf
    hi = -math.inf
    for i in range(x.shape[0]):
        v = x[i]
        if math.isfinite(v):
            lo = min(lo, v)
            hi = max(hi, v)
    return lo, hi


@inline
def curve_at(curve_x, curve_y, curve_n, k, x):
    """Curve ``k`` of the limit tables at ``x`` (:func:`interp` on its first
    ``curve_n[k]`` points)."""
    n = curve_n[k]
    return interp(x, curve_x[k, :n], curve_y[k, :n])


@kernel
def current_limits_kernel(temp_c, cell_v, soc, curve_x, curve_y, curve_n, taper_v):
    """Charge and discharge current limit per cell, A (both >= 0).

    Each is the smaller of its temperature curve (at the coldest and at the hottest
    finite reading, 25 degC without one, the smaller value) and its SOC curve (the
    fullest group for charge, the emptiest for discharge), times the taper of the
    highest (charge) or lowest (discharge) finite cell voltage; both 0 without a
    finite cell voltage. Comparisons follow Python's ``min``/``max``.
    """
    t_lo, t_hi = finite_range(temp_c)
    if t_lo > t_hi:  # no finite reading
        t_lo = 25.0
        t_hi = 25.0
    z_lo = math.inf
    z_hi = -math.inf
    has_nan = False
    for g in range(soc.shape[0]):
        z = soc[g]
        has_nan = has_nan or math.isnan(z)
        z_lo = min(z_lo, z)
        z_hi = max(z_hi, z)
    if has_nan:
        z_lo = math.nan
        z_hi = math.nan
    v_lo, v_hi = finite_range(cell_v)
    if v_lo > v_hi:  # no finite cell voltage: no current allowed
        return 0.0, 0.0
    chg = py_min(
        py_min(
            curve_at(curve_x, curve_y, curve_n, LC_CHARGE_TEMP, t_lo),
            curve_at(curve_x, curve_y, curve_n, LC_CHARGE_TEMP, t_hi),
        ),
        curve_at(curve_x, curve_y, curve_n, LC_CHARGE_SOC, z_hi),
    )
    dis = py_min(
        py_min(
            curve_at(curve_x, curve_y, curve_n, LC_DISCHARGE_TEMP, t_lo),
            curve_at(curve_x, curve_y, curve_n, LC_DISCHARGE_TEMP, t_hi),
        ),
        curve_at(curve_x, curve_y, curve_n, LC_DISCHARGE_SOC, z_lo),
    )
    chg *= taper(v_hi, taper_v[TP_CHARGE_START], taper_v[TP_CHARGE_END])
    dis *= taper(v_lo, taper_v[TP_DISCHARGE_START], taper_v[TP_DISCHARGE_END])
    return chg, dis
