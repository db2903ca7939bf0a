"""Cell parameter sets (chemistries) as data files.

A chemistry is one TOML file: cell ratings, thermal and self-discharge figures,
hysteresis rate and 2-D tables over (SOC, temperature) for both OCV branches,
R0 and one or two RC pairs. Every figure names its public source in the file.
The built-in sets live in ``bms/chemistry/data``; a user passes the path of
their own file instead of a name.

Files are validated once on load; every problem raises :class:`ConfigError`
with one line naming the file, the section and the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bms.errors import ConfigError

__all__ = ["TABLE_NAMES", "Chemistry", "available", "load_chemistry"]

#: 2-D tables over (soc, temp_c). The RC2 pair is optional.
TABLE_NAMES = ("ocv_charge_v", "ocv_discharge_v", "r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
_REQUIRED_TABLES = TABLE_NAMES[:5]
_POSITIVE_TABLES = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")

_DATA = "data"


def available() -> list[str]:
    """Names of the built-in chemistries."""
    folder = resources.files(__package__).joinpath(_DATA)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


@dataclass(frozen=True)
class Chemistry:
    """One validated cell parameter set. Tables are float64, shape (n_soc, n_temp)."""

    name: str
    source: str
    chemistry: str
    description: str
    capacity_ah: float
    nominal_voltage_v: float
    min_voltage_v: float
    max_voltage_v: float
    mass_kg: float
    coulombic_efficiency: float
    specific_heat_j_per_kg_k: float
    heat_transfer_w_per_k: float
    self_discharge_perc_per_month: float
    self_discharge_activation_j_per_mol: float
    hysteresis_gamma: float
    capacity_temp_c: np.ndarray
    capacity_factor: np.ndarray
    soc: np.ndarray
    temp_c: np.ndarray
    tables: dict[str, np.ndarray] = field(repr=False)
    sources: tuple[str, ...] = ()

    @property
    def rc_pairs(self) -> int:
        """How many RC pairs the file defines (1 or 2)."""
        return 2 if "r2_ohm" in self.tables else 1

    @property
    def thermal_mass_j_per_k(self) -> float:
        return self.mass_kg * self.specific_heat_j_per_kg_k

    def ocv_v(self, soc: float, temp_c: float, branch: str = "mean") -> float:
        """OCV by bilinear interpolation of the file's own grid (for reports and tests)."""
        if branch == "charge":
            tab = self.tables["ocv_charge_v"]
        elif branch == "discharge":
            tab = self.tables["ocv_discharge_v"]
        else:
            tab = 0.5 * (self.tables["ocv_charge_v"] + self.tables["ocv_discharge_v"])
        return float(_interp2(self.soc, self.temp_c, tab, soc, temp_c))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<python>") -> Chemistry:
        """Build and validate a chemistry from the parsed TOML structure."""
        return _parse(data, source)


def load_chemistry(name_or_path: str | Path) -> Chemistry:
    """Load a built-in chemistry by name, or a user's TOML file by path."""
    text_name = str(name_or_path)
    looks_like_path = text_name.endswith(".toml") or "/" in text_name or "\\" in text_name
    if looks_like_path:
        path = Path(text_name)
        if not path.is_file():
            raise ConfigError(f"chemistry file not found: {path}", field="chemistry")
        src = str(path)
        raw = path.read_bytes()
    else:
        names = available()
        if text_name not in names:
            raise ConfigError(
                f"unknown chemistry {text_name!r}; built-in: {', '.join(names)} "
                "(or give the path of a .toml file)",
                field="chemistry",
            )
        res = resources.files(__package__).joinpath(_DATA, text_name + ".toml")
        src = f"bms/chemistry/data/{text_name}.toml"
        raw = res.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=src) from None
    return _parse(data, src)


# --------------------------------------------------------------------------- parsing


def _section(data: dict[str, Any], name: str, src: str) -> dict[str, Any]:
    sec = data.get(name)
    if not isinstance(sec, dict):
        raise ConfigError("section missing", source=src, field=f"[{name}]")
    return sec


def _num(
    sec: dict[str, Any],
    sec_name: str,
    key: str,
    src: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    default: float | None = None,
) -> float:
    fld = f"[{sec_name}] {key}"
    if key not in sec:
        if default is not None:
            return default
        raise ConfigError("missing", source=src, field=fld)
    val = sec[key]
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise ConfigError(f"must be a number, got {val!r}", source=src, field=fld)
    val = float(val)
    if not math.isfinite(val):
        raise ConfigError(f"must be finite, got {val}", source=src, field=fld)
    if lo is not None and (val <= lo if lo_open else val < lo):
        raise ConfigError(
            f"must be {'>' if lo_open else '>='} {lo:g}, got {val:g}", source=src, field=fld
        )
    if hi is not None and val > hi:
        raise ConfigError(f"must be <= {hi:g}, got {val:g}", source=src, field=fld)
    return val


def _vector(sec: dict[str, Any], sec_name: str, key: str, src: str) -> np.ndarray:
    fld = f"[{sec_name}] {key}"
    if key not in sec:
        raise ConfigError("missing", source=src, field=fld)
    try:
        arr = np.asarray(sec[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("must be a list of numbers", source=src, field=fld) from None
    if arr.ndim != 1 or arr.size < 2:
        raise ConfigError("must be a list of at least 2 numbers", source=src, field=fld)
    if not np.all(np.isfinite(arr)):
        raise ConfigError("has a non-finite value", source=src, field=fld)
    if np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise ConfigError(
            f"must be strictly ascending ({arr[i]:g} then {arr[i + 1]:g})", source=src, field=fld
        )
    return arr


def _parse(data: dict[str, Any], src: str) -> Chemistry:
    meta = _section(data, "meta", src)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("must be a non-empty string", source=src, field="[meta] name")
    chem = meta.get("chemistry", "")
    sources = meta.get("sources", [])
    if not isinstance(sources, list) or not sources:
        raise ConfigError("every set names its public sources", source=src, field="[meta] sources")

    cell = _section(data, "cell", src)
    capacity_ah = _num(cell, "cell", "capacity_ah", src, lo=0.0, lo_open=True)
    vmin = _num(cell, "cell", "min_voltage_v", src, lo=0.0, lo_open=True)
    vmax = _num(cell, "cell", "max_voltage_v", src, lo=vmin, lo_open=True)
    vnom = _num(cell, "cell", "nominal_voltage_v", src, lo=vmin, hi=vmax)
    mass = _num(cell, "cell", "mass_kg", src, lo=0.0, lo_open=True)
    eta = _num(cell, "cell", "coulombic_efficiency", src, lo=0.0, hi=1.0, lo_open=True, default=1.0)

    th = _section(data, "thermal", src)
    cp = _num(th, "thermal", "specific_heat_j_per_kg_k", src, lo=0.0, lo_open=True)
    ha = _num(th, "thermal", "heat_transfer_w_per_k", src, lo=0.0, lo_open=True)

    sd = _section(data, "self_discharge", src)
    sd_rate = _num(sd, "self_discharge", "rate_perc_per_month", src, lo=0.0, hi=100.0)
    sd_ea = _num(sd, "self_discharge", "activation_energy_j_per_mol", src, lo=0.0)

    hy = _section(data, "hysteresis", src)
    gamma = _num(hy, "hysteresis", "gamma", src, lo=0.0)

    ct = _section(data, "capacity_vs_temp", src)
    cap_t = _vector(ct, "capacity_vs_temp", "temp_c", src)
    try:
        cap_f = np.asarray(ct.get("factor"), dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            "must be a list of numbers", source=src, field="[capacity_vs_temp] factor"
        ) from None
    if cap_f.shape != cap_t.shape:
        raise ConfigError(
            f"needs {cap_t.size} values (one per temp_c), got {cap_f.size}",
            source=src,
            field="[capacity_vs_temp] factor",
        )
    if not np.all(np.isfinite(cap_f)) or np.any(cap_f <= 0):
        raise ConfigError(
            "values must be finite and > 0", source=src, field="[capacity_vs_temp] factor"
        )

    tb = _section(data, "tables", src)
    soc = _vector(tb, "tables", "soc", src)
    if abs(soc[0]) > 1e-12 or abs(soc[-1] - 1.0) > 1e-12:
        raise ConfigError(
            f"must run from 0.0 to 1.0, got {soc[0]:g} .. {soc[-1]:g}",
            source=src,
            field="[tables] soc",
        )
    temp = _vector(tb, "tables", "temp_c", src)
    if temp[0] < -273.15:
        raise ConfigError("below absolute zero", source=src, field="[tables] temp_c")
    shape = (soc.size, temp.size)
    tables: dict[str, np.ndarray] = {}
    for key in TABLE_NAMES:
        fld = f"[tables] {key}"
        if key not in tb:
            if key in _REQUIRED_TABLES:
                raise ConfigError("missing", source=src, field=fld)
            continue
        try:
            arr = np.asarray(tb[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(
                "must be a list of rows of numbers (one row per soc)", source=src, field=fld
            ) from None
        if arr.shape != shape:
            raise ConfigError(
                f"shape must be (len(soc), len(temp_c)) = {shape}, got {arr.shape}",
                source=src,
                field=fld,
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError("has a non-finite value", source=src, field=fld)
        if key in _POSITIVE_TABLES and np.any(arr <= 0):
            raise ConfigError("values must be > 0", source=src, field=fld)
        if key.startswith("ocv"):
            steps = np.diff(arr, axis=0)
            if np.any(steps <= 0):
                i, j = np.argwhere(steps <= 0)[0]
                raise ConfigError(
                    f"OCV must rise strictly with soc; at temp_c={temp[j]:g} it goes "
                    f"{arr[i, j]:.4f} -> {arr[i + 1, j]:.4f} V from soc {soc[i]:g} to "
                    f"{soc[i + 1]:g}",
                    source=src,
                    field=fld,
                )
        tables[key] = arr
    if ("r2_ohm" in tables) != ("tau2_s" in tables):
        raise ConfigError(
            "r2_ohm and tau2_s come together (both or neither)", source=src, field="[tables]"
        )
    gap = tables["ocv_charge_v"] - tables["ocv_discharge_v"]
    if np.any(gap < 0):
        i, j = np.argwhere(gap < 0)[0]
        raise ConfigError(
            f"charge branch below discharge branch at soc {soc[i]:g}, temp_c {temp[j]:g}",
            source=src,
            field="[tables] ocv_charge_v",
        )
    return Chemistry(
        name=name,
        source=src,
        chemistry=str(chem),
        description=str(meta.get("description", "")),
        capacity_ah=capacity_ah,
        nominal_voltage_v=vnom,
        min_voltage_v=vmin,
        max_voltage_v=vmax,
        mass_kg=mass,
        coulombic_efficiency=eta,
        specific_heat_j_per_kg_k=cp,
        heat_transfer_w_per_k=ha,
        self_discharge_perc_per_month=sd_rate,
        self_discharge_activation_j_per_mol=sd_ea,
        hysteresis_gamma=gamma,
        capacity_temp_c=cap_t,
        capacity_factor=cap_f,
        soc=soc,
        temp_c=temp,
        tables=tables,
        sources=tuple(str(s) for s in sources),
    )


def _interp2(xg: np.ndarray, yg: np.ndarray, tab: np.ndarray, x: float, y: float) -> float:
    """Bilinear interpolation on a rectilinear grid, clamped at the edges."""
    x = min(max(x, xg[0]), xg[-1])
    y = min(max(y, yg[0]), yg[-1])
    i = int(np.clip(np.searchsorted(xg, x, side="right") - 1, 0, xg.size - 2))
    j = int(np.clip(np.searchsorted(yg, y, side="right") - 1, 0, yg.size - 2))
    wx = (x - xg[i]) / (xg[i + 1] - xg[i])
    wy = (y - yg[j]) / (yg[j + 1] - yg[j])
    return float(
        (1 - wx) * (1 - wy) * tab[i, j]
        + wx * (1 - wy) * tab[i + 1, j]
        + (1 - wx) * wy * tab[i, j + 1]
        + wx * wy * tab[i + 1, j + 1]
    )
