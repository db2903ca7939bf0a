"""The HIL report: the scenario plot (panels, gaps, units) and the HTML page (escaping, links)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from hil.report import TestResult, _figure, plot_scenario, write_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def full_series(rng: np.random.Generator, n: int = 300, span_s: float = 600.0) -> dict:
    t = np.linspace(0.0, span_s, n)
    soc = np.linspace(80.0, 40.0, n)
    v = 3.3 + 0.001 * rng.standard_normal(n)
    return {
        "t_s": t,
        "soc_true_perc": soc,
        "soc_true_min_perc": soc - 1.0,
        "soc_true_max_perc": soc + 1.0,
        "soc_reported_perc": soc + 2.0,
        "cell_v_true_min": v - 0.01,
        "cell_v_true_max": v + 0.01,
        "cell_v_reported_min": v - 0.012,
        "cell_v_reported_max": v + 0.012,
        "current_a": np.full(n, 50.0),
        "discharge_limit_a": np.full(n, 100.0),
        "charge_limit_a": np.full(n, 60.0),
        "current_reported_a": np.full(n, 50.5),
        "contactors_closed": (t > 10.0).astype(int),
        "fault_latched": (t > 500.0).astype(bool),
        "protection_level": np.where(t > 400.0, 3, np.where(t > 300.0, 1, 0)),
        "bms_state": np.where(t > 500.0, 4, np.where(t > 10.0, 2, 0)),
        "bms_state_labels": ["INIT", "STANDBY", "NORMAL", "CHARGE", "ERROR"],
    }


def lines_per_panel(series: dict) -> list[int]:
    fig = _figure(series, "t")
    assert fig is not None
    return [len(ax.lines) for ax in fig.axes]


def line_labelled(ax, label: str):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


# --------------------------------------------------------------------------- plot


def test_plot_writes_a_nontrivial_png_and_creates_the_folder(rng, tmp_path: Path) -> None:
    path = tmp_path / "plots" / "deep" / "scenario.png"
    out = plot_scenario(full_series(rng), path, "overvoltage <REQ-1>")
    assert out == path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000


def test_every_series_is_drawn_in_its_panel(rng) -> None:
    fig = _figure(full_series(rng), "all")
    assert fig is not None
    assert [len(ax.lines) for ax in fig.axes] == [2, 4, 4, 4]
    assert len(fig.axes[0].collections) == 1  # the true min-max band
    assert [ln.get_label() for ln in fig.axes[3].lines] == [
        *("contactors", "fault latch", "protection", "BMS state")
    ]
    assert all(ax.get_legend() is not None for ax in fig.axes)
    assert fig.get_suptitle() == "all"


def test_charge_limit_is_drawn_below_zero(rng) -> None:
    series = full_series(rng)
    fig = _figure(series, "t")
    assert fig is not None
    cur = fig.axes[2]
    np.testing.assert_allclose(line_labelled(cur, "-charge limit").get_ydata(), -60.0)
    np.testing.assert_allclose(line_labelled(cur, "discharge limit").get_ydata(), 100.0)


def test_missing_and_all_nan_series_are_not_drawn(tmp_path: Path) -> None:
    n = 50
    series = {
        "t_s": np.arange(n, dtype=float),
        "soc_true_perc": np.full(n, np.nan),
        "soc_true_min_perc": np.full(n, np.nan),
        "cell_v_true_min": np.full(n, np.nan),
        "current_a": np.ones(n),
        "protection_level": np.full(n, np.nan),
    }
    assert lines_per_panel(series) == [0, 0, 1, 0]
    fig = _figure(series, "t")
    assert fig is not None
    assert len(fig.axes[0].collections) == 0  # no band from a lone all-NaN bound
    assert [ax.get_legend() is None for ax in fig.axes] == [True, True, False, True]
    assert plot_scenario(series, tmp_path / "p.png", "sparse") is not None


def test_a_lone_band_bound_is_drawn_as_a_line() -> None:
    n = 20
    series = {"t_s": np.arange(n, dtype=float), "soc_true_max_perc": np.linspace(50, 60, n)}
    fig = _figure(series, "t")
    assert fig is not None
    assert len(fig.axes[0].lines) == 1
    assert len(fig.axes[0].collections) == 0


def test_nan_gaps_stay_gaps(rng) -> None:
    series = full_series(rng)
    series["soc_reported_perc"][100:120] = np.nan
    series["bms_state"] = series["bms_state"].astype(float)
    series["bms_state"][50:60] = np.nan
    fig = _figure(series, "t")
    assert fig is not None
    soc_y = np.asarray(line_labelled(fig.axes[0], "reported").get_ydata())
    assert soc_y.shape == (300,)
    assert np.isnan(soc_y).sum() == 20
    state_y = np.asarray(line_labelled(fig.axes[3], "BMS state").get_ydata())
    assert np.isnan(state_y[50:60]).all()
    assert np.isfinite(np.delete(state_y, np.s_[50:60])).all()


@pytest.mark.parametrize(
    ("span_s", "unit", "scale"),
    [(100.0, "s", 1.0), (1200.0, "s", 1.0), (2 * 3600.0, "min", 60.0), (5 * 3600.0, "h", 3600.0)],
)
def test_time_axis_unit_follows_the_span(span_s: float, unit: str, scale: float) -> None:
    t = np.linspace(0.0, span_s, 30)
    fig = _figure({"t_s": t, "current_a": np.zeros(30)}, "t")
    assert fig is not None
    assert fig.axes[3].get_xlabel() == f"time in {unit}"
    np.testing.assert_allclose(fig.axes[2].lines[0].get_xdata(), t / scale)


def test_state_ticks_name_the_protection_levels_and_the_bms_states_that_occur(rng) -> None:
    fig = _figure(full_series(rng), "t")
    assert fig is not None
    labels = [tick.get_text() for tick in fig.axes[3].get_yticklabels()]
    assert labels == [
        *("open", "closed"),
        *("clear", "latched"),
        *("Ok", "Warning", "Alarm", "Fault"),
        *("INIT", "NORMAL", "ERROR"),  # STANDBY and CHARGE never occur
    ]


def test_bms_state_without_labels_shows_codes_and_unnamed_codes_show_numbers() -> None:
    n = 10
    t = np.arange(n, dtype=float)
    fig = _figure({"t_s": t, "bms_state": np.r_[np.zeros(5), np.full(5, 7)]}, "t")
    assert fig is not None
    assert [tk.get_text() for tk in fig.axes[3].get_yticklabels()] == ["0", "7"]
    state = {"t_s": t, "bms_state": np.r_[np.zeros(5), np.full(5, 7)], "bms_state_labels": ["A"]}
    fig = _figure(state, "t")
    assert fig is not None
    assert [tk.get_text() for tk in fig.axes[3].get_yticklabels()] == ["A", "7"]


@pytest.mark.parametrize("t_s", [None, [], [0.0], [0.0, np.nan]])
def test_fewer_than_two_time_samples_returns_none_and_writes_nothing(t_s, tmp_path: Path) -> None:
    series = {} if t_s is None else {"t_s": np.asarray(t_s, dtype=float)}
    series["current_a"] = np.ones(len(series.get("t_s", [1.0])))
    path = tmp_path / "sub" / "p.png"
    assert plot_scenario(series, path, "empty") is None
    assert not path.parent.exists()


def test_a_series_of_another_length_is_a_bug_and_raises(tmp_path: Path) -> None:
    series = {"t_s": np.arange(10.0), "current_a": np.ones(9)}
    with pytest.raises(ValueError, match="current_a"):
        plot_scenario(series, tmp_path / "p.png", "bad")


# --------------------------------------------------------------------------- html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])


def results() -> list[TestResult]:
    return [
        TestResult(
            nodeid="hil/test_protection.py::test_ov_opens_contactors",
            name="test_ov_opens_contactors",
            requirement_id="REQ-PROT-001",
            requirement="Contactors open within 500 ms of a cell over 3.65 V",
            outcome="passed",
            duration_s=1.25,
            plot="plots/ov.png",
            trace="traces/ov.asc",
            figures={"reaction time": "0.52 s"},
        ),
        TestResult(
            nodeid="hil/test_soc.py::test_soc_error",
            name="test_soc_error",
            requirement_id="REQ-SOC-002",
            requirement="SOC error < 5 % & stays bounded",
            outcome="failed",
            duration_s=2.5,
            message="<script>alert('x')</script> error 7.1 % > 5 %",
            plot="plots/soc error.png",
        ),
        TestResult(
            nodeid="hil/test_can.py::test_cycle_time",
            name="test_cycle_time",
            requirement_id="REQ-CAN-003",
            requirement="BMS_Status every 100 ms",
            outcome="skipped",
            duration_s=0.0,
            message="needs a real device",
        ),
        TestResult(
            nodeid="hil/test_can.py::test_timeout",
            name="test_timeout",
            requirement_id="REQ-CAN-004",
            requirement="VCU timeout opens contactors",
            outcome="error",
            duration_s=0.25,
            message="fixture failed",
            trace="traces/timeout.blf",
        ),
    ]


def write(tmp_path: Path) -> tuple[str, _Collect]:
    header = {"device": "emulator <local>", "bitrate": "500000", "DBC": "dbc/bms.dbc"}
    out = write_html(tmp_path / "report" / "index.html", "HIL & run", header, results())
    assert out == tmp_path / "report" / "index.html"
    text = out.read_text(encoding="utf-8")
    parsed = _Collect()
    parsed.feed(text)
    return text, parsed


def test_html_names_every_test_and_its_requirement(tmp_path: Path) -> None:
    text, _ = write(tmp_path)
    for r in results():
        assert r.name in text
        assert r.requirement_id in text
    assert "reaction time: 0.52 s" in text


def test_html_summary_counts_each_outcome_and_the_total_duration(tmp_path: Path) -> None:
    text, _ = write(tmp_path)
    assert "4 tests: 1 passed, 1 failed, 1 skipped, 1 error; total duration 4.00 s" in text


def test_html_escapes_every_text(tmp_path: Path) -> None:
    text, parsed = write(tmp_path)
    assert "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "HIL &amp; run" in text
    assert "emulator &lt;local&gt;" in text
    assert "SOC error &lt; 5 % &amp; stays bounded" in text
    assert "script" not in parsed.tags


def test_html_shows_the_plot_of_a_test_with_one_and_links_its_section(tmp_path: Path) -> None:
    _, parsed = write(tmp_path)
    assert parsed.imgs == ["plots/ov.png", "plots/soc%20error.png"]
    section_links = [h for h in parsed.hrefs if h.startswith("#")]
    assert section_links == ["#test-0", "#test-1"]  # none for the two tests without a plot
    assert {h[1:] for h in section_links} <= parsed.ids
    assert "traces/ov.asc" in parsed.hrefs
    assert "traces/timeout.blf" in parsed.hrefs


def test_html_needs_no_external_resources(tmp_path: Path) -> None:
    text, parsed = write(tmp_path)
    assert "http" not in text
    assert not parsed.tags & {"script", "link", "iframe"}
    assert '<meta charset="utf-8">' in text


def test_html_with_no_tests_still_has_a_summary(tmp_path: Path) -> None:
    out = write_html(tmp_path / "r.html", "empty", {}, [])
    assert "0 tests: 0 passed, 0 failed, 0 skipped, 0 error; total duration 0.00 s" in (
        out.read_text(encoding="utf-8")
    )
