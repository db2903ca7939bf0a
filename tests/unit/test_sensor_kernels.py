"""Sensor kernels against plain-Python twins, over random inputs and faults."""

from __future__ import annotations

import math

import numpy as np

from bms.plant.sensors import _NormalStream, sense_cell_voltages, sense_temperatures


def twin_cell_voltages(v_group, gain, offset, noise, noise_v, lsb_v, full_scale_v, wire_open):
    """Node potentials, open wires following the node below (wire 0: the node above)."""
    n = len(v_group)
    nodes = [0.0]
    for v in v_group:
        nodes.append(nodes[-1] + v)
    sensed = list(nodes)
    for w in range(n + 1):
        if wire_open[w]:
            sensed[w] = sensed[w - 1] if w > 0 else nodes[1]
    out = []
    for s in range(n):
        v = (sensed[s + 1] - sensed[s]) * (1 + gain[s]) + offset[s] + noise[s] * noise_v
        if lsb_v > 0:
            v = math.floor(v / lsb_v + 0.5) * lsb_v
        out.append(min(max(v, 0.0), full_scale_v))
    return out


def twin_temperatures(cell_t, cells, offset, noise, noise_c, lsb_c, mode, last, open_c, short_c):
    out = []
    for k, c in enumerate(cells):
        if mode[k] == 1 and not math.isnan(last[k]):
            t = last[k]
        elif mode[k] == 2:
            t = open_c
        elif mode[k] == 3:
            t = short_c
        else:
            t = cell_t[c] + offset[k] + noise[k] * noise_c
            if lsb_c > 0:
                t = math.floor(t / lsb_c + 0.5) * lsb_c
        out.append(t)
    return out


def test_cell_voltage_kernel_matches_twin(rng) -> None:
    for _ in range(200):
        n = int(rng.integers(1, 30))
        v = rng.uniform(2.5, 3.6, n)
        gain = rng.normal(0, 1e-3, n)
        offset = rng.normal(0, 2e-3, n)
        noise = rng.standard_normal(n)
        wires = rng.random(n + 1) < 0.15
        lsb = float(rng.choice([0.0, 1e-4, 1e-3]))
        fs = float(rng.choice([5.0, 10.0]))
        out = np.empty(n)
        sense_cell_voltages(v, gain, offset, noise, 0.002, lsb, fs, wires, out)
        want = twin_cell_voltages(v, gain, offset, noise, 0.002, lsb, fs, wires)
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)


def test_temperature_kernel_matches_twin(rng) -> None:
    for _ in range(200):
        n_cells = int(rng.integers(1, 40))
        k = int(rng.integers(1, n_cells + 1))
        cells = rng.choice(n_cells, size=k, replace=False).astype(np.int64)
        cell_t = rng.uniform(-20, 60, n_cells)
        offset = rng.normal(0, 0.5, k)
        noise = rng.standard_normal(k)
        mode = rng.integers(0, 4, k).astype(np.int64)
        last = np.where(rng.random(k) < 0.3, np.nan, rng.uniform(0, 40, k))
        lsb = float(rng.choice([0.0, 0.1]))
        want = twin_temperatures(
            cell_t, cells, offset, noise, 0.2, lsb, mode, last.copy(), -40.0, 150.0
        )
        out = np.empty(k)
        last_k = last.copy()
        sense_temperatures(cell_t, cells, offset, noise, 0.2, lsb, mode, last_k, -40.0, 150.0, out)
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(last_k, out)  # the kernel remembers its readings


def test_noise_stream_is_the_generators_single_draws_in_order(rng) -> None:
    """Block draws cut into readings of any size give the values of one draw at a time."""
    seed = int(rng.integers(1 << 31))
    stream = _NormalStream(np.random.default_rng(seed))
    single = np.random.default_rng(seed)
    for _ in range(400):
        k = int(rng.integers(0, 700))
        if rng.random() < 0.5:
            got = [stream.scalar() for _ in range(k)]
        else:
            got = stream.fill(np.empty(k)).tolist()
        assert got == [float(single.standard_normal()) for _ in range(k)]
