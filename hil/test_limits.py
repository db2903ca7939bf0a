"""Current limits: derating when cold, hot, nearly full and nearly empty; a draw above them."""

from __future__ import annotations

import pytest

from hil import spec

NOMINAL = (25.0, 0.5)  # temperature, SOC
# a limit over SOC follows the device's own SOC, which a device that outlives the test
# keeps from before (it does not know the bench swapped the pack): on such a device these
# cases need its stored SOC set to the pack's by hand, as the SOC tests do
_SOC_OF_THE_DEVICE = pytest.mark.emulated_only(
    "the limit follows the device's own SOC: set it to the pack's by hand and run alone"
)
DERATING = [
    # case, temperature, SOC, limit that must derate, at most this fraction of nominal
    ("cold", -5.0, 0.5, "charge_current_limit_a", 0.25),
    ("cold", -15.0, 0.5, "discharge_current_limit_a", 0.6),
    ("hot", 52.0, 0.5, "charge_current_limit_a", 0.5),
    ("hot", 60.0, 0.5, "discharge_current_limit_a", 0.6),
    pytest.param(
        "nearly full", 25.0, 0.97, "charge_current_limit_a", 0.3, marks=_SOC_OF_THE_DEVICE
    ),
    pytest.param(
        "nearly empty", 25.0, 0.04, "discharge_current_limit_a", 0.3, marks=_SOC_OF_THE_DEVICE
    ),
]


def _limits(bench, temp_c: float, soc: float) -> tuple[float, float]:
    bench.plant.set_soc(soc)
    bench.faults.ambient(temp_c)
    bench.power_up()
    bench.advance(2.0)
    return bench.value("charge_current_limit_a"), bench.value("discharge_current_limit_a")


def _nominal(limit: str) -> float:
    return (
        spec.CHARGE_LIMIT_NOMINAL_A
        if limit.startswith("charge")
        else spec.DISCHARGE_LIMIT_NOMINAL_A
    )


@pytest.mark.requirement(
    "LIM-0",
    "At 25 degC and SOC 50 % the charge and discharge current limits are at least "
    f"{spec.NOMINAL_LIMIT_FRACTION:.0%} of {spec.CHARGE_LIMIT_NOMINAL_A:g} A and "
    f"{spec.DISCHARGE_LIMIT_NOMINAL_A:g} A.",
)
@_SOC_OF_THE_DEVICE
def test_current_limits_nominal(bench, figures) -> None:
    charge, discharge = _limits(bench, *NOMINAL)
    figures["charge"] = f"{charge:.1f} A"
    figures["discharge"] = f"{discharge:.1f} A"
    for name, got in (("charge_current_limit_a", charge), ("discharge_current_limit_a", discharge)):
        want = spec.NOMINAL_LIMIT_FRACTION * _nominal(name)
        assert got >= want, f"{name} {got:.1f} A at 25 degC, SOC 50 %: less than {want:.1f} A"


@pytest.mark.parametrize(
    "case,temp_c,soc,limit,fraction",
    DERATING,
    ids=[
        f"{c.values[0]}-{c.values[3][:6]}" if hasattr(c, "values") else f"{c[0]}-{c[3][:6]}"
        for c in DERATING
    ],
)
def test_current_limit_derates(case, temp_c, soc, limit, fraction, bench, figures, request) -> None:
    request.node.add_marker(
        pytest.mark.requirement(
            "LIM-1",
            f"{case} ({temp_c:g} degC, SOC {soc:.0%}): the {limit.split('_')[0]} current limit "
            f"is at most {fraction:.0%} of its nominal {_nominal(limit):g} A.",
        )
    )
    nominal = _nominal(limit)
    charge, discharge = _limits(bench, temp_c, soc)
    got = charge if limit.startswith("charge") else discharge
    figures[limit] = f"{got:.1f} A of {nominal:.1f} A"
    assert got <= fraction * nominal, (
        f"{case}: {limit} {got:.1f} A, more than {fraction:.0%} of {nominal:.1f} A"
    )


@pytest.mark.requirement(
    "LIM-2",
    "A vehicle that draws 25 % + 20 A more than the discharge limit gets a warning within "
    f"{spec.LIMIT_WARNING_S} s, then a fault with the contactors open within "
    f"{spec.LIMIT_FAULT_S} s.",
)
def test_draw_above_the_limit_warns_then_faults(bench, dut, vcu, plant, clock, figures) -> None:
    bench.faults.ambient(60.0)  # hot: the discharge limit derates to about half
    dut.power_up()
    dut.close()
    clock.advance(1.0)
    limit = dut.value("discharge_current_limit_a")
    assert limit is not None and limit > 0
    drawn = 1.25 * limit + 20.0
    vcu.drive(drawn, respect_limits=False)
    t0 = clock.now_s
    clock.wait_for(
        lambda: dut.value("level_discharge_overcurrent") in ("Warning", "Alarm", "Fault"),
        spec.LIMIT_WARNING_S,
        "a discharge over-current warning",
        show=("level_discharge_overcurrent", "discharge_current_limit_a"),
    )
    warned = clock.now_s - t0
    fault_at: list[float] = []

    def opened_on_fault() -> bool:
        if not fault_at and dut.value("level_discharge_overcurrent") == "Fault":
            fault_at.append(clock.now_s - t0)
        return bool(fault_at) and not plant.contactors.closed

    clock.wait_for(
        opened_on_fault,
        spec.LIMIT_FAULT_S - warned,
        "a discharge over-current fault and open contactors",
        show=("level_discharge_overcurrent", "bms_state"),
    )
    figures["limit"] = f"{limit:.0f} A, drawn {drawn:.0f} A"
    figures["warning"] = f"{warned:.1f} s"
    figures["fault"] = f"{fault_at[0]:.1f} s"
    figures["contactors open"] = f"{clock.now_s - t0:.1f} s"
