"""CRC-8 checksums: catalogue check values, a bitwise twin, batch == scalar."""

from __future__ import annotations

import numpy as np
import pytest

from bms.canbus.crc import (
    CRC8,
    crc8,
    crc8_autosar,
    crc8_autosar_batch,
    crc8_sae_j1850,
    crc8_sae_j1850_batch,
)
from bms.errors import ConfigError

# name -> (poly, init, xorout, check of b"123456789"), from Greg Cook's "Catalogue of
# parametrised CRC algorithms" (reveng): CRC-8/SAE-J1850 and CRC-8/AUTOSAR.
CATALOGUE = {
    "crc8_sae_j1850": (0x1D, 0xFF, 0xFF, 0x4B),
    "crc8_autosar": (0x2F, 0xFF, 0xFF, 0xDF),
}


def bitwise_crc8(data: bytes, poly: int, init: int, xorout: int) -> int:
    """The textbook shift register, one bit at a time (no table)."""
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ xorout


def test_check_values_match_the_crc_catalogue() -> None:
    assert crc8_sae_j1850(b"123456789") == 0x4B
    assert crc8_autosar(b"123456789") == 0xDF
    for name, (_, _, _, check) in CATALOGUE.items():
        scalar, batch = CRC8[name]
        assert scalar(b"123456789") == check
        rows = np.frombuffer(b"123456789", np.uint8).reshape(1, -1)
        assert batch(rows).tolist() == [check]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_table_crc_equals_the_bitwise_register_on_random_data(name: str, rng) -> None:
    poly, init, xorout, _ = CATALOGUE[name]
    scalar, _ = CRC8[name]
    for _ in range(300):
        data = bytes(rng.integers(0, 256, int(rng.integers(0, 70)), dtype=np.uint8))
        assert scalar(data) == bitwise_crc8(data, poly, init, xorout)
        start = int(rng.integers(0, 256))
        assert scalar(bytearray(data), start) == bitwise_crc8(data, poly, start, xorout)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_batch_equals_scalar_row_by_row(name: str, rng) -> None:
    scalar, batch = CRC8[name]
    for k in (0, 1, 7, 8, 63):
        rows = rng.integers(0, 256, (50, k), dtype=np.uint8)
        got = batch(rows)
        assert got.dtype == np.uint8 and got.shape == (50,)
        assert got.tolist() == [scalar(bytes(r)) for r in rows]
        assert batch(rows, 0x00).tolist() == [scalar(bytes(r), 0x00) for r in rows]


def test_registry_names_both_algorithms_and_rejects_unknown_names() -> None:
    assert CRC8["crc8_sae_j1850"] == (crc8_sae_j1850, crc8_sae_j1850_batch)
    assert CRC8["crc8_autosar"] == (crc8_autosar, crc8_autosar_batch)
    assert crc8("crc8_autosar") == CRC8["crc8_autosar"]
    with pytest.raises(ConfigError, match="crc8_sae_j1850, crc8_autosar"):
        crc8("crc16")


def test_batch_rejects_anything_but_a_2d_uint8_array() -> None:
    with pytest.raises(ValueError, match=r"\(n, k\) uint8"):
        crc8_sae_j1850_batch(np.zeros(8, np.uint8))
    with pytest.raises(ValueError, match=r"\(n, k\) uint8"):
        crc8_autosar_batch(np.zeros((2, 8), np.int64))


@pytest.mark.parametrize("name", sorted(CRC8))
def test_batch_can_leave_out_the_crc_byte(name: str, rng) -> None:
    scalar, batch = CRC8[name]
    rows = rng.integers(0, 256, size=(40, 8), dtype=np.uint8)
    for skip in (0, 3, 7):
        expected = [scalar(bytes(np.delete(r, skip))) for r in rows]
        assert batch(rows, skip=skip).tolist() == expected
