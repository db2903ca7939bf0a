"""Balancing: it starts above its threshold, bleeds the right cells, and the spread closes."""

from __future__ import annotations

import numpy as np
import pytest

from hil import spec

HIGH = (10, 50, 90, 130)  # groups charged above the rest
LOW = (20, 60, 100, 140)  # groups below the rest: never to be bled
BASE_SOC, HIGH_SOC, LOW_SOC = 0.90, 0.97, 0.80


def _imbalanced(plant) -> None:
    soc = np.full(plant.soc.shape, BASE_SOC)
    soc[list(HIGH), :] = HIGH_SOC
    soc[list(LOW), :] = LOW_SOC
    plant.set_soc(soc.reshape(-1))


@pytest.mark.requirement(
    "BAL-1",
    f"With groups {HIGH_SOC - BASE_SOC:.0%} above the rest, balancing starts within "
    f"{spec.BALANCING_START_S} s, bleeds those groups and never the low ones.",
)
def test_balancing_starts_and_bleeds_the_high_cells(dut, plant, clock, figures) -> None:
    _imbalanced(plant)
    dut.power_up()
    took = clock.wait_for(
        lambda: dut.value("balancing_active") is True,
        spec.BALANCING_START_S,
        "balancing active",
        show=("balancing_active", "bleeding_groups"),
    )
    clock.advance(1.5)  # every page of the bleed command once more
    bleed = dut.array("bleed") > 0.5
    figures["start"] = f"{took:.1f} s"
    figures["groups bled"] = int(bleed.sum())
    missed = [g + 1 for g in HIGH if not bleed[g]]
    wrong = [g + 1 for g in LOW if bleed[g]]
    assert not missed, f"high groups not bled: {missed} (1-based)"
    assert not wrong, f"low groups bled: {wrong} (1-based)"
    reported = dut.value("bleeding_groups")
    assert reported == int(bleed.sum()), f"BleedingGroups {reported}, bleed command {bleed.sum()}"


@pytest.mark.requirement(
    "BAL-2",
    "The high groups lose charge against the low ones at the bleed rate (V/R x duty), within "
    f"{spec.BLEED_RATE_TOLERANCE:.0%}: the spread closes.",
)
def test_spread_converges_at_the_bleed_rate(bench, dut, plant, clock, figures) -> None:
    _imbalanced(plant)
    dut.power_up()
    clock.wait_for(
        lambda: dut.value("balancing_active") is True, spec.BALANCING_START_S, "balancing"
    )
    clock.advance(2.0)
    span_s = 300.0
    hi, lo = list(HIGH), list(LOW)
    q_as = plant.capacity_ah[hi + lo].mean() * 3600.0
    before = plant.soc[hi].mean() - plant.soc[lo].mean()
    v = plant.group_voltage_v[hi].mean()
    clock.advance(span_s)
    after = plant.soc[hi].mean() - plant.soc[lo].mean()
    bal = bench.cfg.firmware.balancing
    expected = (
        v / bench.cfg.balancing.resistor_ohm * (1.0 - bal.measure_pause_fraction) * span_s / q_as
    )
    closed = before - after
    figures["spread closed"] = f"{closed * 100:.4f} % SOC in {span_s:.0f} s"
    figures["expected"] = f"{expected * 100:.4f} % SOC"
    if closed > 0:
        figures["time to balance"] = f"{(before / closed) * span_s / 3600:.0f} h"
    assert closed > 0, "the spread between high and low groups did not close"
    assert abs(closed - expected) <= spec.BLEED_RATE_TOLERANCE * expected, (
        f"closed {closed * 100:.4f} % SOC, expected {expected * 100:.4f} % SOC "
        f"+/- {spec.BLEED_RATE_TOLERANCE:.0%}"
    )
    assert dut.value("cell_voltage_spread_v") > 0.0
