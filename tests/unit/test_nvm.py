"""Persistent memory: every field survives a power cycle, bad copies fall back, kills lose nothing.

Real files in tmp_path; the kill test SIGKILLs a real writer process.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bms.firmware.nvm as nvm_module
from bms.errors import InputError
from bms.firmware.nvm import FaultEntry, NvmImage, PersistentMemory, decode, encode

N = 4
LOGGER = "bms.firmware.nvm"


def full_image(n: int = N, tag: int = 1) -> NvmImage:
    """An image whose every stored field differs from its default (``tag`` varies it)."""
    img = NvmImage(
        n_groups=n,
        soc=[0.1 * tag % 1.0 + 0.01 * i for i in range(n)],
        capacity_ah=[280.5 - i - tag for i in range(n)],
        resistance_factor=[1.0 + 0.05 * i + 0.001 * tag for i in range(n)],
        charge_throughput_ah=1234.5 + tag,
        discharge_throughput_ah=2345.25 + tag,
        power_on_count=17 + tag,
        operating_time_s=3600.0 * 99.5 + tag,
        contactor_cycles=321 + tag,
    )
    img.soc[1] = math.nan  # unknown
    img.capacity_ah[2] = math.nan  # use nominal
    img.log_fault(12.5, 0x101, f"cell 3 overvoltage {tag}")
    img.log_fault(99.0, 0x202, 'contactor welded: \u00b5"quoted"\n')
    return img


def as_dict(img: NvmImage) -> dict:
    d = dataclasses.asdict(img)
    d.pop("fault_log_size")
    return d


def assert_same(a: NvmImage, b: NvmImage) -> None:
    np.testing.assert_equal(as_dict(a), as_dict(b))  # nan == nan here


def header_seq(path: Path) -> int:
    head = path.read_bytes().split(b"\n", 1)[0].decode()
    return int(head.split("seq=")[1].split()[0])


def two_saves(tmp_path: Path) -> tuple[PersistentMemory, NvmImage, NvmImage]:
    """Save state 1 (slot a, seq 1) and state 2 (slot b, seq 2); return the memory and both."""
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    pm.load()
    first, second = full_image(tag=1), full_image(tag=2)
    assert pm.save(first) and pm.save(second)
    assert header_seq(pm.slot_paths[0]) == 1 and header_seq(pm.slot_paths[1]) == 2
    return pm, first, second


def reload(pm: PersistentMemory, **kw) -> tuple[PersistentMemory, NvmImage]:
    """A power cycle: a fresh PersistentMemory on the same path loads."""
    fresh = PersistentMemory(pm.path, kw.pop("n_groups", pm.n_groups), **kw)
    return fresh, fresh.load()


# -- round trip, sequence, fault log --------------------------------------------------------------


def test_round_trip_restores_every_stored_field(tmp_path) -> None:
    img = full_image()
    default = NvmImage(n_groups=N)
    for f in dataclasses.fields(NvmImage):
        if f.name not in ("n_groups", "fault_log_size"):
            assert repr(getattr(img, f.name)) != repr(getattr(default, f.name)), f.name
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    assert pm.save(img)
    fresh, loaded = reload(pm)
    assert fresh.faults == []
    assert_same(loaded, img)
    assert math.isnan(loaded.soc[1]) and math.isnan(loaded.capacity_ah[2])
    assert loaded.fault_log[1].text == img.fault_log[1].text
    assert isinstance(loaded.power_on_count, int) and isinstance(loaded.soc[0], float)


def test_defaults_mean_unknown_soc_nominal_capacity_new_resistance(tmp_path) -> None:
    img = NvmImage(n_groups=3)
    assert all(math.isnan(v) for v in img.soc + img.capacity_ah)
    assert img.resistance_factor == [1.0, 1.0, 1.0]
    assert (img.power_on_count, img.contactor_cycles, img.fault_log) == (0, 0, [])
    assert img.charge_throughput_ah == img.discharge_throughput_ah == img.operating_time_s == 0.0


def test_numpy_arrays_in_the_image_are_stored(tmp_path) -> None:
    img = NvmImage(n_groups=N, soc=np.array([0.2, 0.3, np.nan, 1.0]))
    img.power_on_count = np.int64(5)
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    assert pm.save(img)
    _, loaded = reload(pm)
    np.testing.assert_equal(loaded.soc, [0.2, 0.3, np.nan, 1.0])
    assert loaded.power_on_count == 5


def test_sequence_number_increases_and_saves_alternate_slots(tmp_path) -> None:
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    pm.load()
    a, b = pm.slot_paths
    seen = []
    for k in range(1, 6):
        img = full_image(tag=k)
        assert pm.save(img)
        assert pm.sequence == k
        seen.append((header_seq(a), header_seq(b) if b.exists() else 0))
        fresh, loaded = reload(pm)
        assert fresh.sequence == k and fresh.faults == []
        assert_same(loaded, img)
    assert seen == [(1, 0), (1, 2), (3, 2), (3, 4), (5, 4)]


def test_save_without_load_continues_the_sequence_and_keeps_the_newest_copy(tmp_path) -> None:
    pm, _, _ = two_saves(tmp_path)
    other = PersistentMemory(pm.path, N)  # never called load()
    third = full_image(tag=3)
    assert other.save(third)
    assert header_seq(pm.slot_paths[0]) == 3 and header_seq(pm.slot_paths[1]) == 2
    _, loaded = reload(pm)
    assert_same(loaded, third)


def test_fault_log_keeps_the_newest_n_entries(tmp_path) -> None:
    pm = PersistentMemory(tmp_path / "bms.nvm", N, fault_log_size=5)
    img = pm.load()
    assert img.fault_log_size == 5
    for k in range(12):
        img.log_fault(float(k), k, f"fault {k}")
    assert [e.code for e in img.fault_log] == [7, 8, 9, 10, 11]
    assert pm.save(img)
    _, loaded = reload(pm, fault_log_size=5)
    assert loaded.fault_log == [FaultEntry(float(k), k, f"fault {k}") for k in range(7, 12)]
    fresh, smaller = reload(pm, fault_log_size=3)  # configured smaller since the last save
    assert [e.code for e in smaller.fault_log] == [9, 10, 11] and fresh.faults == []


def test_save_stores_only_the_newest_n_even_if_the_image_holds_more(tmp_path) -> None:
    img = NvmImage(n_groups=N, fault_log_size=100)
    for k in range(10):
        img.log_fault(float(k), k, "x")
    pm = PersistentMemory(tmp_path / "bms.nvm", N, fault_log_size=4)
    assert pm.save(img)
    _, loaded = reload(pm, fault_log_size=100)
    assert [e.code for e in loaded.fault_log] == [6, 7, 8, 9]


def test_long_fault_text_is_cut_and_bad_entries_raise() -> None:
    img = NvmImage(n_groups=1)
    img.log_fault(1.0, 3, "x" * 1000)
    assert len(img.fault_log[0].text) == nvm_module.MAX_FAULT_TEXT
    with pytest.raises(InputError, match="fault code"):
        img.log_fault(1.0, -1, "negative code")
    with pytest.raises(InputError, match="fault time_s"):
        img.log_fault(math.inf, 1, "no time")


# -- missing and corrupt copies -------------------------------------------------------------------


def test_missing_file_gives_defaults_and_an_nvm_missing_fault(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    img = pm.load()
    assert pm.faults == ["nvm missing"]
    assert_same(img, NvmImage(n_groups=N))
    assert pm.sequence == 0
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def _flip_payload_byte(data: bytes) -> bytes:
    i = data.index(b"\n") + 1 + 40
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _flip_header_seq(data: bytes) -> bytes:
    return data.replace(b"seq=2 ", b"seq=9 ", 1)


def _bad_value(field: str, value: object, index: int | None = 1):
    def build(_: bytes) -> bytes:
        img = full_image(tag=2)
        if index is None:
            setattr(img, field, value)
        else:
            getattr(img, field)[index] = value
        return encode(img, 2)

    return build


def _payload_edit(edit):
    """Rewrite the JSON payload of seq 2 with ``edit(text)`` and a valid header and CRC."""

    def build(data: bytes) -> bytes:
        import zlib

        body = edit(data.split(b"\n", 1)[1].decode()).encode()
        head = f"BMSNVM v=1 seq=2 len={len(body)} crc32={zlib.crc32(body):08x}\n"
        return head.encode() + body

    return build


CORRUPTIONS = {
    "flipped payload byte": (_flip_payload_byte, "crc mismatch"),
    "flipped header digit": (_flip_header_seq, "seq is 2 in the payload, 9 in the header"),
    "truncated payload": (lambda d: d[: len(d) // 2], "truncated"),
    "truncated header": (lambda d: d[:20], "truncated header"),
    "empty file": (lambda d: b"", "empty file"),
    "garbage": (lambda d: bytes(range(256)) * 3, "wrong magic"),
    "wrong magic": (lambda d: b"XMSNVM" + d[6:], "wrong magic"),
    "wrong version": (lambda d: d.replace(b"v=1 ", b"v=7 ", 1), "unsupported format version 7"),
    "bytes after payload": (lambda d: d + b"\0\0", "length mismatch"),
    "wrong n_groups": (lambda d: encode(full_image(n=N + 1, tag=2), 2), "n_groups is 5"),
    "soc 1.7": (_bad_value("soc", 1.7), "soc[1]: must be within [0, 1] or nan, got 1.7"),
    "capacity -5": (_bad_value("capacity_ah", -5.0), "capacity_ah[1]"),
    "resistance nan": (_bad_value("resistance_factor", math.nan), "resistance_factor[1]"),
    "negative counter": (_bad_value("contactor_cycles", -1, None), "contactor_cycles"),
    "short array": (_bad_value("soc", [0.5] * (N - 1), None), "soc: must have n_groups"),
    "unknown field": (_payload_edit(lambda t: t[:-1] + ', "extra": 1}'), "unknown field 'extra'"),
    "missing field": (
        _payload_edit(lambda t: t.replace('"contactor_cycles": 323, ', "")),
        "missing field 'contactor_cycles'",
    ),
    "NaN literal": (_payload_edit(lambda t: t.replace("null", "NaN", 1)), "not valid JSON"),
    "huge float": (_payload_edit(lambda t: t.replace("1236.5", "1e999")), "charge_throughput_ah"),
    "float counter": (_payload_edit(lambda t: t.replace(": 19,", ": 19.0,")), "power_on_count"),
    "duplicate key": (_payload_edit(lambda t: t[:-1] + ', "seq": 2}'), "duplicate field"),
    "not an object": (_payload_edit(lambda t: "[1, 2]"), "not a JSON object"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_bad_newest_copy_falls_back_to_the_other_copy_with_a_fault(tmp_path, caplog, name) -> None:
    corrupt, reason = CORRUPTIONS[name]
    pm, first, _ = two_saves(tmp_path)
    newest = pm.slot_paths[1]
    newest.write_bytes(corrupt(newest.read_bytes()))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fresh, loaded = reload(pm)
    assert_same(loaded, first)
    assert fresh.sequence == 1
    assert len(fresh.faults) == 1, fresh.faults
    assert fresh.faults[0].startswith("nvm corrupt: ") and fresh.faults[0].endswith(
        ", using backup"
    )
    assert reason in fresh.faults[0]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_the_exact_fault_text_for_a_crc_mismatch(tmp_path) -> None:
    pm, _, _ = two_saves(tmp_path)
    pm.slot_paths[1].write_bytes(_flip_payload_byte(pm.slot_paths[1].read_bytes()))
    fresh, _ = reload(pm)
    assert fresh.faults == ["nvm corrupt: crc mismatch, using backup"]


def test_nan_capacity_is_valid_but_negative_capacity_is_not() -> None:
    img = full_image()
    img.capacity_ah = [math.nan] * N
    _, loaded = decode(encode(img, 1), N)
    assert all(math.isnan(v) for v in loaded.capacity_ah)
    img.capacity_ah[0] = -5.0
    with pytest.raises(InputError, match=r"capacity_ah\[0\].*got -5"):
        decode(encode(img, 1), N)


def test_bad_older_copy_is_reported_and_the_newest_used(tmp_path) -> None:
    pm, _, second = two_saves(tmp_path)
    pm.slot_paths[0].write_bytes(b"junk")
    fresh, loaded = reload(pm)
    assert_same(loaded, second)
    assert fresh.faults == ["nvm corrupt: wrong magic, using backup"]


def test_next_save_after_a_fallback_rewrites_the_bad_copy(tmp_path) -> None:
    pm, first, _ = two_saves(tmp_path)
    pm.slot_paths[1].write_bytes(b"")
    fresh, loaded = reload(pm)
    assert fresh.faults and fresh.save(loaded)
    assert header_seq(pm.slot_paths[1]) == 2  # the bad slot, not the good one
    again, reloaded = reload(pm)
    assert again.faults == []
    assert_same(reloaded, first)


@pytest.mark.parametrize("other", ["corrupt", "missing"])
def test_no_valid_copy_gives_defaults_and_a_fault(tmp_path, caplog, other) -> None:
    pm, _, _ = two_saves(tmp_path)
    pm.slot_paths[1].write_bytes(b"BMSNVM v=1 seq=2 len=5 crc32=00000000\n{}")
    if other == "corrupt":
        pm.slot_paths[0].write_bytes(_flip_payload_byte(pm.slot_paths[0].read_bytes()))
    else:
        pm.slot_paths[0].unlink()
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fresh, loaded = reload(pm)
    assert fresh.faults == ["nvm corrupt: no valid copy, using defaults"]
    assert_same(loaded, NvmImage(n_groups=N))
    assert fresh.sequence == 0
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "\n" not in caplog.records[0].getMessage()


def test_random_damage_never_raises_out_of_load(tmp_path, rng) -> None:
    pm, first, second = two_saves(tmp_path)
    good = [s.read_bytes() for s in pm.slot_paths]
    for _ in range(300):
        for slot, data in zip(pm.slot_paths, good, strict=True):
            buf = bytearray(data)
            kind = rng.integers(4)
            if kind == 0:  # flip a few random bits
                for i in rng.integers(len(buf), size=rng.integers(1, 4)):
                    buf[i] ^= 1 << int(rng.integers(8))
            elif kind == 1:  # truncate
                del buf[rng.integers(len(buf)) :]
            elif kind == 2:  # random bytes
                buf = bytearray(rng.bytes(int(rng.integers(0, 300))))
            slot.write_bytes(bytes(buf))
        fresh, loaded = reload(pm)
        loaded.check()
        if fresh.sequence == 2:
            assert_same(loaded, second)
        elif fresh.sequence == 1:
            assert_same(loaded, first)
        else:
            assert fresh.faults == ["nvm corrupt: no valid copy, using defaults"]


def test_a_directory_in_place_of_a_copy_is_a_bad_copy_not_a_crash(tmp_path) -> None:
    pm, first, _ = two_saves(tmp_path)
    pm.slot_paths[1].unlink()
    pm.slot_paths[1].mkdir()
    fresh, loaded = reload(pm)
    assert_same(loaded, first)
    assert fresh.faults[0].startswith("nvm corrupt: read failed")


# -- crash safety ---------------------------------------------------------------------------------

# The writer: loads, says "ready", then bumps power_on_count and saves in a tight loop, printing
# each count once its save has returned True. The `bms` package is stubbed so that importing
# the nvm module does not pay for numba at every restart (the test restarts it 40 times).
CHILD = r"""
import sys, types
bms_dir, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, sub in (("bms", ""), ("bms.firmware", "/firmware")):
    mod = types.ModuleType(name)
    mod.__path__ = [bms_dir + sub]
    sys.modules[name] = mod
from bms.firmware.nvm import PersistentMemory
pm = PersistentMemory(path, n)
img = pm.load()
if pm.faults not in ([], ["nvm missing"]):
    sys.exit("faults at load: %r" % pm.faults)
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    c = img.power_on_count + 1
    img.power_on_count = c
    img.soc = [(c % 101) / 100.0] * n
    img.operating_time_s = float(c)
    img.log_fault(float(c), c, "saved %d" % c)
    if not pm.save(img):
        sys.exit("save failed: %r" % pm.faults)
    sys.stdout.write("%d\n" % c)
    sys.stdout.flush()
"""


def _consistent(img: NvmImage) -> None:
    c = img.power_on_count
    if c == 0:  # killed before the first save
        assert_same(img, NvmImage(n_groups=img.n_groups))
        return
    assert img.soc == [(c % 101) / 100.0] * img.n_groups
    assert img.operating_time_s == float(c)
    assert img.fault_log[-1] == FaultEntry(float(c), c, f"saved {c}")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_at_random_moments_during_saves_never_loses_the_last_good_state(
    tmp_path, rng
) -> None:
    n_groups, kills = 200, 40  # the bus pack; ~7 s in all
    path = tmp_path / "bms.nvm"
    bms_dir = str(Path(nvm_module.__file__).resolve().parents[1])
    tmp_files = [p.with_name(p.name + ".tmp") for p in PersistentMemory(path, 1).slot_paths]
    last = 0  # the count on disk after the previous kill
    progressed = mid_write = 0
    for k in range(kills):
        out, err = tmp_path / "out.txt", tmp_path / "err.txt"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, bms_dir, str(path), str(n_groups)],
                stdout=fo,
                stderr=fe,
            )
            if k % 4 == 0:  # at any moment, start-up and load included
                time.sleep(float(rng.uniform(0.0, 0.15)))
            else:  # while saving: wait for "ready" (not a fixed delay, as start-up takes ~0.1 s)
                deadline = time.monotonic() + 10.0
                while not out.read_bytes() and child.poll() is None:
                    assert time.monotonic() < deadline, "the writer did not start"
                    time.sleep(0.002)
                time.sleep(float(rng.uniform(0.0, 0.15)))
            exited = child.poll()
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert exited is None, f"writer exited by itself: {err.read_text()}"
        lines = out.read_bytes().split(b"\n")[:-1]  # a line without its newline is not reported
        done = [int(x) for x in lines if x != b"ready"]
        assert done == list(range(last + 1, last + 1 + len(done))), k
        reported = done[-1] if done else last
        progressed += bool(done)
        mid_write += any(p.exists() for p in tmp_files)

        pm = PersistentMemory(path, n_groups)
        img = pm.load()
        assert pm.faults == ([] if pm.sequence else ["nvm missing"]), (k, pm.faults)
        assert reported <= img.power_on_count <= reported + 1, (k, reported, img.power_on_count)
        _consistent(img)
        last = img.power_on_count
    assert progressed >= kills // 2, progressed
    assert mid_write >= 1  # some kills did land between opening the temp file and the rename
    assert last >= 3 * kills


def test_torn_write_leaves_the_last_good_state(tmp_path) -> None:
    pm, _, second = two_saves(tmp_path)
    # A third save was in progress to slot a when the power went: its temp file is half
    # written, and slot a is truncated too (as a file system without atomic rename could).
    third = encode(full_image(tag=3), 3)
    a = pm.slot_paths[0]
    a.with_name(a.name + ".tmp").write_bytes(third[: len(third) // 2])
    a.write_bytes(a.read_bytes()[:50])
    fresh, loaded = reload(pm)
    assert_same(loaded, second)
    assert fresh.sequence == 2
    (fault,) = fresh.faults
    assert fault.startswith("nvm corrupt: truncated (") and fault.endswith(", using backup")
    # the next save overwrites the stale temp file and the torn slot
    assert fresh.save(full_image(tag=4))
    assert not a.with_name(a.name + ".tmp").exists()
    again, newest = reload(pm)
    assert again.faults == [] and again.sequence == 3
    assert_same(newest, full_image(tag=4))


def test_stale_temp_file_alone_is_ignored(tmp_path) -> None:
    pm = PersistentMemory(tmp_path / "bms.nvm", N)
    a = pm.slot_paths[0]
    a.with_name(a.name + ".tmp").write_bytes(encode(full_image(), 1)[:100])
    img = pm.load()  # the very first save was cut: nothing was ever stored
    assert pm.faults == ["nvm missing"]
    assert_same(img, NvmImage(n_groups=N))


# -- write failures -------------------------------------------------------------------------------


def _dir_removed(tmp_path: Path) -> Path:
    d = tmp_path / "nvmdir"
    d.mkdir()
    return d / "bms.nvm"


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a directory")
    return tmp_path / "afile" / "bms.nvm"


@pytest.mark.parametrize(
    "where", [_dir_removed, _under_a_file], ids=["dir removed", "under a file"]
)
def test_save_that_cannot_write_returns_false_logs_one_line_and_records_a_fault(
    tmp_path, caplog, where
) -> None:
    path = where(tmp_path)
    pm = PersistentMemory(path, N)
    img = pm.load()
    assert pm.faults == ["nvm missing"]
    if path.parent.is_dir():
        shutil.rmtree(path.parent)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert pm.save(full_image()) is False
    assert len(pm.faults) == 2 and pm.faults[1].startswith("nvm write failed: [Errno")
    assert ("Not a directory" if "afile" in str(path) else "No such file") in pm.faults[1]
    (rec,) = caplog.records
    assert rec.levelno == logging.ERROR and rec.name == LOGGER
    msg = rec.getMessage()
    assert "\n" not in msg and f"create the directory {path.parent}" in msg
    # a failing disk does not flood the log or the fault list
    caplog.clear()
    assert pm.save(img) is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert len(pm.faults) == 2
    # once the directory is back the next save works and says so
    if not path.parent.exists() or not path.parent.is_dir():
        if path.parent.exists():
            path.parent.unlink()
        path.parent.mkdir()
    caplog.clear()
    assert pm.save(img) is True
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anyway")
def test_save_into_a_read_only_directory_returns_false(tmp_path, caplog) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        pm = PersistentMemory(d / "bms.nvm", N)
        caplog.set_level(logging.ERROR, logger=LOGGER)
        assert pm.save(full_image()) is False
        assert pm.faults[-1].startswith("nvm write failed: [Errno 13]")
        assert "writable" in caplog.records[0].getMessage()
    finally:
        d.chmod(0o700)


@pytest.mark.parametrize(
    ("call", "err", "hint"),
    [
        ("write", errno.ENOSPC, "free space on the file system of"),
        ("fsync", errno.EIO, "check the storage that holds"),
        ("open", errno.EACCES, "writable"),
        ("replace", errno.EROFS, "writable"),
    ],
)
def test_save_failing_midway_keeps_the_old_copies_and_says_what_to_fix(
    tmp_path, monkeypatch, caplog, call, err, hint
) -> None:
    pm, _, second = two_saves(tmp_path)
    caplog.set_level(logging.ERROR, logger=LOGGER)

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, call, fail)
    ok = pm.save(full_image(tag=3))
    monkeypatch.undo()
    assert ok is False
    assert pm.faults[-1] == f"nvm write failed: [Errno {err}] {os.strerror(err)}"
    (rec,) = caplog.records
    assert hint in rec.getMessage()
    assert not list(tmp_path.glob("*.tmp"))
    _, loaded = reload(pm)
    assert_same(loaded, second)


def test_save_refuses_an_image_that_could_not_be_loaded_back(tmp_path, caplog) -> None:
    pm, _, second = two_saves(tmp_path)
    bad = full_image(tag=3)
    bad.soc[0] = 1.2
    caplog.set_level(logging.ERROR, logger=LOGGER)
    assert pm.save(bad) is False
    assert pm.faults[-1] == "nvm write refused: soc[0]: must be within [0, 1] or nan, got 1.2"
    assert len(caplog.records) == 1
    assert pm.save(full_image(n=N + 1)) is False
    _, loaded = reload(pm)
    assert_same(loaded, second)


def test_bad_arguments_raise_early(tmp_path) -> None:
    from bms.errors import ConfigError

    with pytest.raises(ConfigError, match="n_groups: must be an integer >= 1, got 0"):
        PersistentMemory(tmp_path / "x", 0)
    with pytest.raises(ConfigError, match="fault_log_size"):
        PersistentMemory(tmp_path / "x", 1, fault_log_size=0)
    with pytest.raises(TypeError):
        PersistentMemory(tmp_path / "x", 1).save({"soc": [0.5]})  # type: ignore[arg-type]
