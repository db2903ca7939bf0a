"""CRC-8 checksums that protect payloads of CAN frames (end-to-end protection).

Two parametrised CRC-8 algorithms, as named in Greg Cook's "Catalogue of
parametrised CRC algorithms" (reveng): CRC-8/SAE-J1850 and CRC-8/AUTOSAR. Both
are table-driven (a 256-entry table built at import), non-reflected, with
init 0xFF and xorout 0xFF. Each has a scalar function over one payload and a
batch function over the rows of an (n, k) uint8 array. A DBC says which one a
message uses; ``CRC8`` maps that name to the (scalar, batch) pair.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from bms._jit import kernel
from bms.errors import ConfigError

__all__ = [
    "CRC8",
    "CRC8_TABLES",
    "Crc8Batch",
    "Crc8Scalar",
    "crc8",
    "crc8_autosar",
    "crc8_autosar_batch",
    "crc8_sae_j1850",
    "crc8_sae_j1850_batch",
]

_XOROUT = 0xFF


def _table(poly: int) -> tuple[int, ...]:
    """The 256 remainders of a non-reflected CRC-8 with generator `poly`."""
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        out.append(crc)
    return tuple(out)


_SAE_J1850 = _table(0x1D)
_AUTOSAR = _table(0x2F)
_SAE_J1850_NP = np.array(_SAE_J1850, dtype=np.uint8)
_AUTOSAR_NP = np.array(_AUTOSAR, dtype=np.uint8)


def _scalar(table: tuple[int, ...], data: bytes | bytearray, init: int) -> int:
    crc = init
    for byte in data:
        crc = table[crc ^ byte]
    return crc ^ _XOROUT


@kernel
def crc8_rows_kernel(rows, table, init, xorout, skip, out):  # pragma: no cover - numba
    """CRC-8 of every row of ``rows`` (n, k uint8), leaving column ``skip`` out (the CRC's
    own byte; -1 for none), into ``out`` (n, uint8)."""
    n, k = rows.shape
    for i in range(n):
        crc = init
        for j in range(k):
            if j != skip:
                crc = table[crc ^ rows[i, j]]
        out[i] = crc ^ xorout


def _batch(
    table: npt.NDArray[np.uint8], data: npt.ArrayLike, init: int, skip: int = -1
) -> npt.NDArray[np.uint8]:
    rows = np.asarray(data)
    if rows.ndim != 2 or rows.dtype != np.uint8:
        raise ValueError(f"CRC batch needs an (n, k) uint8 array, got {rows.dtype} {rows.shape}")
    out = np.empty(rows.shape[0], dtype=np.uint8)
    crc8_rows_kernel(rows, table, np.uint8(init), np.uint8(_XOROUT), skip, out)
    return out


def crc8_sae_j1850(data: bytes | bytearray, init: int = 0xFF) -> int:
    """CRC-8/SAE-J1850 (poly 0x1D, init 0xFF, xorout 0xFF; check b"123456789" -> 0x4B)."""
    return _scalar(_SAE_J1850, data, init)


def crc8_sae_j1850_batch(
    data: npt.ArrayLike, init: int = 0xFF, skip: int = -1
) -> npt.NDArray[np.uint8]:
    """CRC-8/SAE-J1850 of every row of an (n, k) uint8 array -> (n,) uint8; column
    ``skip`` (the CRC's own byte) left out."""
    return _batch(_SAE_J1850_NP, data, init, skip)


def crc8_autosar(data: bytes | bytearray, init: int = 0xFF) -> int:
    """CRC-8/AUTOSAR (poly 0x2F, init 0xFF, xorout 0xFF; check b"123456789" -> 0xDF)."""
    return _scalar(_AUTOSAR, data, init)


def crc8_autosar_batch(
    data: npt.ArrayLike, init: int = 0xFF, skip: int = -1
) -> npt.NDArray[np.uint8]:
    """CRC-8/AUTOSAR of every row of an (n, k) uint8 array -> (n,) uint8; column ``skip``
    (the CRC's own byte) left out."""
    return _batch(_AUTOSAR_NP, data, init, skip)


class Crc8Scalar(Protocol):
    """A scalar CRC-8: payload bytes (and an optional register start value) -> CRC."""

    def __call__(self, data: bytes | bytearray, init: int = 0xFF) -> int: ...


class Crc8Batch(Protocol):
    """A batch CRC-8: (n, k) uint8 rows (and an optional start value) -> (n,) uint8."""

    def __call__(
        self, data: npt.ArrayLike, init: int = 0xFF, skip: int = -1
    ) -> npt.NDArray[np.uint8]: ...


#: CRC algorithms by the name a binding or DBC uses: name -> (scalar, batch).
CRC8: dict[str, tuple[Crc8Scalar, Crc8Batch]] = {
    "crc8_sae_j1850": (crc8_sae_j1850, crc8_sae_j1850_batch),
    "crc8_autosar": (crc8_autosar, crc8_autosar_batch),
}


#: The same algorithms as (256-entry table, register start value, final xor), for kernels
#: that checksum frames they pack themselves.
CRC8_TABLES: dict[str, tuple[npt.NDArray[np.uint8], int, int]] = {
    "crc8_sae_j1850": (_SAE_J1850_NP, 0xFF, _XOROUT),
    "crc8_autosar": (_AUTOSAR_NP, 0xFF, _XOROUT),
}


def crc8(name: str) -> tuple[Crc8Scalar, Crc8Batch]:
    """The (scalar, batch) pair registered as `name`; ConfigError lists the valid names."""
    try:
        return CRC8[name]
    except KeyError:
        raise ConfigError(f"unknown CRC algorithm {name!r} (valid: {', '.join(CRC8)})") from None
