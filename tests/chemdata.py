"""A small synthetic chemistry for tests: round numbers, known by heart."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

SOC = [0.0, 0.1, 0.5, 0.9, 1.0]
TEMP = [0.0, 25.0, 45.0]


def _cols(values: list[float], temp_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)):
    return [[v * f for f in temp_scale] for v in values]


BASE: dict[str, Any] = {
    "meta": {
        "name": "toy",
        "chemistry": "LFP",
        "description": "test cell",
        "sources": ["[1] synthetic values for tests"],
    },
    "cell": {
        "capacity_ah": 100.0,
        "nominal_voltage_v": 3.2,
        "min_voltage_v": 2.5,
        "max_voltage_v": 3.65,
        "mass_kg": 2.0,
        "coulombic_efficiency": 1.0,
    },
    "thermal": {"specific_heat_j_per_kg_k": 1000.0, "heat_transfer_w_per_k": 0.5},
    "self_discharge": {"rate_perc_per_month": 3.0, "activation_energy_j_per_mol": 50000.0},
    "hysteresis": {"gamma": 20.0},
    "capacity_vs_temp": {"temp_c": [0.0, 25.0, 45.0], "factor": [0.8, 1.0, 1.02]},
    "tables": {
        "soc": SOC,
        "temp_c": TEMP,
        "ocv_charge_v": [
            [2.6, 2.605, 2.61],
            [3.22, 3.225, 3.23],
            [3.31, 3.315, 3.32],
            [3.35, 3.355, 3.36],
            [3.5, 3.505, 3.51],
        ],
        "ocv_discharge_v": [
            [2.58, 2.585, 2.59],
            [3.2, 3.205, 3.21],
            [3.29, 3.295, 3.3],
            [3.33, 3.335, 3.34],
            [3.48, 3.485, 3.49],
        ],
        "r0_ohm": _cols([1.2e-3, 1.0e-3, 0.8e-3, 0.8e-3, 0.9e-3], (3.0, 1.0, 0.8)),
        "r1_ohm": _cols([0.6e-3, 0.5e-3, 0.4e-3, 0.4e-3, 0.5e-3], (3.0, 1.0, 0.8)),
        "tau1_s": _cols([8.0, 10.0, 12.0, 12.0, 10.0]),
        "r2_ohm": _cols([0.4e-3, 0.3e-3, 0.25e-3, 0.25e-3, 0.3e-3], (2.0, 1.0, 0.9)),
        "tau2_s": _cols([300.0, 400.0, 500.0, 500.0, 400.0]),
    },
}


def toy(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the toy chemistry; ``section__key=value`` overrides one field."""
    d = copy.deepcopy(BASE)
    for k, v in overrides.items():
        sec, key = k.split("__")
        d[sec][key] = v
    return d


def flat(value: float) -> list[list[float]]:
    """A table with the same value everywhere (constant parameters)."""
    return np.full((len(SOC), len(TEMP)), value).tolist()
