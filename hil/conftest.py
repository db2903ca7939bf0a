"""The HIL suite's pytest plugin: options, fixtures, report.

Run it on the emulated BMS in virtual time (the default)::

    pytest hil

or on a BMS on any python-can interface, in real time::

    pytest hil --dut external --can-interface slcan --can-channel /dev/ttyACM0

Every option has an environment variable (``BMS_HIL_*``, below); an option on
the command line wins. The report (``--hil-report``, default ``reports/hil``)
holds ``index.html`` (setup, results, a plot per scenario), ``junit.xml`` and
a CAN trace of every test (``traces/``).

Fixtures: ``bench`` (everything below, for one test), ``dut`` (the device
under test, seen through its frames), ``plant`` (the pack model the bench
plays), ``vcu`` (mode, contactor and current requests), ``faults``
(injection into plant, sensors and frames), ``clock`` (advance, wait_for),
``trace`` (the test's CAN log) and ``bus`` (a python-can bus to the device,
for raw frames).
"""

from __future__ import annotations

import math
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest

from bms.cli.common import bus_kwargs
from bms.errors import BmsError
from hil.bench import DEFECTS, Bench, HilSetup, check_setup, new_channel
from hil.helpers import Clock, Device, Trace

OPTIONS = (
    # option, env, help, default
    ("--dut", "BMS_HIL_DUT", "the device under test: emulated or external", "emulated"),
    ("--can-interface", "BMS_HIL_INTERFACE", "python-can interface of the device", "virtual"),
    ("--can-channel", "BMS_HIL_CHANNEL", "channel of the device (port, vcan0, ...)", ""),
    ("--can-bitrate", "BMS_HIL_BITRATE", "bit rate, bit/s", "500000"),
    ("--can-kwargs", "BMS_HIL_KWARGS", "more bus options: KEY=VALUE,KEY=VALUE", ""),
    ("--dbc", "BMS_HIL_DBC", "DBC files (comma-separated) instead of the binding's", ""),
    ("--binding", "BMS_HIL_BINDING", "signal binding (TOML; default dbc/binding.toml)", ""),
    ("--speed", "BMS_HIL_SPEED", "max (virtual time) or a real-time factor; external: 1", ""),
    ("--hil-config", "BMS_HIL_CONFIG", "pack: a preset name or a TOML file (default bus)", ""),
    ("--hil-report", "BMS_HIL_REPORT", "report folder", "reports/hil"),
    ("--hil-trace", "BMS_HIL_TRACE", "write a CAN trace of every test: yes or no", "yes"),
    ("--hil-day", "BMS_HIL_DAY", "seconds of the city-bus day to play, or full", "900"),
    (
        "--dut-defect",
        "BMS_HIL_DEFECT",
        "emulated device with a defect: " + ", ".join(DEFECTS[1:]),
        "",
    ),
)

_RESULTS = pytest.StashKey[list[dict[str, Any]]]()
_SETUP = pytest.StashKey[HilSetup]()
_ITEM_INFO = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "HIL suite (every option also reads its BMS_HIL_* variable)")
    for opt, env, text, default in OPTIONS:
        group.addoption(opt, default=None, help=f"{text} [{env}; default {default or '-'}]")


def _opt(config: pytest.Config, opt: str) -> str:
    for o, env, _, default in OPTIONS:
        if o == opt:
            v = config.getoption(opt.lstrip("-").replace("-", "_"))
            if v is None:
                v = os.environ.get(env, default)
            return str(v).strip()
    raise KeyError(opt)


def _setup_from(config: pytest.Config) -> HilSetup:
    """The bench's setup from options and environment; a bad value stops the run with one
    line that names the option."""

    def bad(opt: str, text: str) -> pytest.UsageError:
        return pytest.UsageError(f"{opt}: {text}")

    dut = _opt(config, "--dut")
    if dut not in ("emulated", "external"):
        raise bad("--dut", f"unknown {dut!r}; use emulated or external")
    try:
        bitrate = int(_opt(config, "--can-bitrate"))
    except ValueError:
        raise bad(
            "--can-bitrate", f"not a whole number: {_opt(config, '--can-bitrate')!r}"
        ) from None
    if bitrate <= 0:
        raise bad("--can-bitrate", f"must be > 0, got {bitrate}")
    kw_text = _opt(config, "--can-kwargs")
    try:
        kwargs = bus_kwargs([k for k in kw_text.split(",") if k.strip()])
    except BmsError as exc:
        raise bad("--can-kwargs", str(exc)) from None
    speed_text = _opt(config, "--speed").lower()
    speed: float | None
    if speed_text in ("", "max"):
        speed = None if dut == "emulated" else 1.0
    else:
        try:
            speed = float(speed_text)
        except ValueError:
            raise bad("--speed", f"use max or a number > 0, got {speed_text!r}") from None
        if not speed > 0 or not math.isfinite(speed):
            raise bad("--speed", f"use max or a number > 0, got {speed_text!r}")
    if dut == "external" and speed is None:
        raise bad("--speed", "an external device runs in real time: use a number (1 = real time)")
    dbc = tuple(s.strip() for s in _opt(config, "--dbc").split(",") if s.strip()) or None
    for f in dbc or ():
        if not Path(f).is_file():
            raise bad("--dbc", f"file not found: {f}")
    binding = _opt(config, "--binding") or None
    if binding and not Path(binding).is_file():
        raise bad("--binding", f"file not found: {binding}")
    trace = _opt(config, "--hil-trace").lower()
    if trace not in ("yes", "no", "1", "0", "true", "false"):
        raise bad("--hil-trace", f"use yes or no, got {trace!r}")
    day_text = _opt(config, "--hil-day").lower()
    day: float | None
    if day_text == "full":
        day = None
    else:
        try:
            day = float(day_text)
        except ValueError:
            raise bad("--hil-day", f"use seconds or full, got {day_text!r}") from None
        if not day > 0:
            raise bad("--hil-day", f"must be > 0 s, got {day_text}")
    defect = _opt(config, "--dut-defect")
    if defect not in DEFECTS:
        raise bad("--dut-defect", f"unknown {defect!r}; choose from {', '.join(DEFECTS[1:])}")
    if defect and dut != "emulated":
        raise bad("--dut-defect", "only the emulated device can be given a defect")
    channel = _opt(config, "--can-channel")
    interface = _opt(config, "--can-interface")
    if dut == "external" and not channel and interface not in ("socketcand", "pcan", "virtual"):
        raise bad("--can-channel", f"an external device on {interface} needs its channel")
    return HilSetup(
        dut=dut,
        interface=interface,
        channel=channel,
        bitrate=bitrate,
        kwargs=kwargs,
        dbc=dbc,
        binding=binding,
        speed=speed,
        config=_opt(config, "--hil-config") or None,
        defect=defect,
        report_dir=Path(_opt(config, "--hil-report")),
        trace=trace in ("yes", "1", "true"),
        day_s=day,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requirement(id, text): the requirement a HIL test checks (in the report)"
    )
    config.addinivalue_line(
        "markers", "emulated_only(reason): the test needs the emulated device (skipped otherwise)"
    )
    config.stash[_SETUP] = _setup_from(config)
    config.stash[_RESULTS] = []


def pytest_report_header(config: pytest.Config) -> list[str]:
    setup = config.stash[_SETUP]
    return ["HIL setup: " + "; ".join(f"{k}: {v}" for k, v in setup.describe().items())]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    setup = config.stash[_SETUP]
    for item in items:
        if not _is_hil(item):
            continue
        mark = item.get_closest_marker("emulated_only")
        if mark is not None and setup.dut != "emulated":
            reason = mark.args[0] if mark.args else "needs the emulated device"
            item.add_marker(pytest.mark.skip(reason=f"external device: {reason}"))


def _is_hil(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().parent == Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def hil_setup(pytestconfig: pytest.Config) -> HilSetup:
    """The setup, checked once before the first test: the pack configuration, and the
    binding against the DBC files and the nodes the bench runs (one message, then stop,
    rather than the same error in every test)."""
    setup = pytestconfig.stash[_SETUP]
    try:
        check_setup(setup)
    except BmsError as exc:
        pytest.exit(f"HIL setup: {exc}", returncode=4)
    return setup


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture
def bench(request: pytest.FixtureRequest, hil_setup: HilSetup) -> Iterator[Bench]:
    """Pack, vehicle and charger around the device under test, for this test."""
    name = _safe(request.node.nodeid)
    trace_path = None
    if hil_setup.trace:
        suffix = ".blf" if hil_setup.virtual else ".asc"
        trace_path = hil_setup.report_dir / "traces" / f"{name}{suffix}"
        trace_path.parent.mkdir(parents=True, exist_ok=True)
    raw_bus = None
    emu_bus = None
    if "bus" in request.fixturenames and hil_setup.dut == "emulated" and hil_setup.virtual:
        ch = new_channel()
        emu_bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
        raw_bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    nvm = None
    if hil_setup.dut == "emulated":
        nvm = Path(request.getfixturevalue("tmp_path")) / "bms.nvm"
    b = Bench(hil_setup, name=name, bus=emu_bus, trace_path=trace_path, nvm_path=nvm)
    b.raw_bus = raw_bus if raw_bus is not None else b.emu.bus
    info = request.node.stash.setdefault(_ITEM_INFO, {})
    info["bench"] = b
    try:
        yield b
    finally:
        b.close_bench()
        if raw_bus is not None:
            raw_bus.shutdown()
        if emu_bus is not None:
            emu_bus.shutdown()
        info["trace"] = str(trace_path) if trace_path is not None else None
        info["series"] = b.recorder.series()
        info["simulated_s"] = b.now_s


@pytest.fixture
def dut(bench: Bench) -> Device:
    """The device under test, seen only through its CAN frames."""
    return Device(bench)


@pytest.fixture
def plant(bench: Bench) -> Any:
    """The pack the bench plays (truth; the device never sees it)."""
    return bench.plant


@pytest.fixture
def vcu(bench: Bench) -> Any:
    return bench.vcu


@pytest.fixture
def faults(bench: Bench) -> Any:
    return bench.faults


@pytest.fixture
def clock(bench: Bench) -> Clock:
    return Clock(bench)


@pytest.fixture
def trace(bench: Bench) -> Trace:
    return Trace(bench)


@pytest.fixture
def bus(bench: Bench) -> can.BusABC:
    """A python-can bus to the device, for raw frames (what comes back: ``dut``)."""
    if bench.raw_bus is None:
        pytest.skip("no CAN bus to the device in this setup")
    return bench.raw_bus


# ---------------------------------------------------------------------------- report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if not _is_hil(item):
        return rep
    info = item.stash.setdefault(_ITEM_INFO, {})
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        info["outcome"] = "skipped" if rep.skipped else ("passed" if rep.passed else "failed")
        if rep.when == "setup" and rep.failed:
            info["outcome"] = "error"
        info["message"] = _one_line(rep)
        info["duration_s"] = info.get("duration_s", 0.0) + rep.duration
    elif rep.when == "teardown" and rep.failed and info.get("outcome") == "passed":
        info["outcome"] = "error"
        info["message"] = _one_line(rep)
    if rep.when == "teardown":
        _finish_item(item, info)
    return rep


def _one_line(rep: pytest.TestReport) -> str:
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    if not rep.failed:
        return ""
    crash = getattr(rep.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(rep.longrepr)
    return text.splitlines()[0] if text else ""


def _finish_item(item: pytest.Item, info: dict[str, Any]) -> None:
    setup = item.config.stash[_SETUP]
    mark = item.get_closest_marker("requirement")
    req_id, req_text = (mark.args[0], mark.args[1]) if mark and len(mark.args) >= 2 else ("", "")
    if not req_text:
        doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip()
        req_text = doc.splitlines()[0] if doc else ""
    name = _safe(item.nodeid)
    plot = None
    series = info.get("series")
    if series is not None and len(series.get("t_s", ())) >= 2:
        from hil.report import plot_scenario

        out = setup.report_dir / "plots" / f"{name}.png"
        try:
            if plot_scenario(series, out, f"{req_id} {item.name}".strip()) is not None:
                plot = str(out.relative_to(setup.report_dir))
        except (OSError, ValueError) as exc:  # a plot that fails must not fail the test
            info["message"] = (info.get("message", "") + f" (plot not written: {exc})").strip()
    trace = info.get("trace")
    if trace is not None and Path(trace).exists():
        trace = str(Path(trace).relative_to(setup.report_dir))
    else:
        trace = None
    figures = {k: str(v) for k, v in info.get("figures", {}).items()}
    if "simulated_s" in info:
        figures.setdefault("time on the bench", f"{info['simulated_s']:.1f} s")
    item.config.stash[_RESULTS].append(
        {
            "nodeid": item.nodeid,
            "name": item.name,
            "requirement_id": req_id,
            "requirement": req_text,
            "outcome": info.get("outcome", "skipped"),
            "duration_s": info.get("duration_s", 0.0),
            "message": info.get("message", ""),
            "plot": plot,
            "trace": trace,
            "figures": figures,
        }
    )
    info.pop("bench", None)
    info.pop("series", None)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Measured values a test reports (shown in the report next to its outcome)."""
    info = request.node.stash.setdefault(_ITEM_INFO, {})
    return info.setdefault("figures", {})


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = session.config.stash.get(_RESULTS, [])
    if not results:
        return
    setup = session.config.stash[_SETUP]
    from hil.report import TestResult, write_html

    folder = setup.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    rows = [TestResult(**r) for r in results]
    write_html(folder / "index.html", "BMS HIL report", setup.describe(), rows)
    _write_junit(folder / "junit.xml", setup, rows)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(_RESULTS, []):
        folder = config.stash[_SETUP].report_dir
        terminalreporter.write_line(
            f"HIL report: {folder / 'index.html'} and {folder / 'junit.xml'}"
        )


def _write_junit(path: Path, setup: HilSetup, rows: list[Any]) -> None:
    """JUnit XML of the HIL tests (the requirement, plot and trace as properties)."""
    suite = ET.Element(
        "testsuite",
        name="hil",
        tests=str(len(rows)),
        failures=str(sum(r.outcome == "failed" for r in rows)),
        errors=str(sum(r.outcome == "error" for r in rows)),
        skipped=str(sum(r.outcome == "skipped" for r in rows)),
        time=f"{sum(r.duration_s for r in rows):.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
    )
    props = ET.SubElement(suite, "properties")
    for k, v in setup.describe().items():
        ET.SubElement(props, "property", name=k, value=v)
    for r in rows:
        module, _, _ = r.nodeid.partition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=module.replace("/", ".").removesuffix(".py"),
            name=r.name,
            time=f"{r.duration_s:.3f}",
        )
        cp = ET.SubElement(case, "properties")
        for k, v in (
            ("requirement_id", r.requirement_id),
            ("requirement", r.requirement),
            ("plot", r.plot or ""),
            ("trace", r.trace or ""),
            *r.figures.items(),
        ):
            ET.SubElement(cp, "property", name=k, value=str(v))
        if r.outcome == "failed":
            ET.SubElement(case, "failure", message=r.message).text = r.message
        elif r.outcome == "error":
            ET.SubElement(case, "error", message=r.message).text = r.message
        elif r.outcome == "skipped":
            ET.SubElement(case, "skipped", message=r.message)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
