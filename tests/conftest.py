"""Shared fixtures. Tests never need hardware; randomness is always seeded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chemdata import toy

from bms import Chemistry, Config, Pack
from bms.config import ModelConfig, PackConfig, SpreadConfig

NO_SPREAD = SpreadConfig(capacity_rel=0.0, resistance_rel=0.0, soc_abs=0.0, self_discharge_rel=0.0)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator; tests never touch global random state."""
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def toy_chem() -> Chemistry:
    """A small synthetic chemistry with round numbers (tests/chemdata.py)."""
    return Chemistry.from_dict(toy(), source="tests/chemdata.py")


def make_pack(
    chem: Chemistry | None = None,
    *,
    series: int = 4,
    parallel: int = 1,
    soc: float = 0.5,
    spread: SpreadConfig = NO_SPREAD,
    model: ModelConfig | None = None,
    temp_c: float = 25.0,
    closed: bool = True,
    seed: int = 1,
) -> Pack:
    """A small pack for tests, contactors closed by default."""
    cfg = Config(
        pack=PackConfig(
            series=series,
            parallel=parallel,
            initial_soc=soc,
            initial_temp_c=temp_c,
            ambient_temp_c=temp_c,
            seed=seed,
        ),
        spread=spread,
        model=model if model is not None else ModelConfig(),
    )
    pack = Pack(cfg, chemistry=chem)
    if closed:
        pack.contactors.command(main_pos=True, main_neg=True)
    return pack


@pytest.fixture(autouse=True)
def _no_leaked_virtual_bus():
    """Fail a test that leaves a python-can virtual bus open (shut every bus down)."""
    from can.interfaces import virtual

    before = set(virtual.channels)
    yield
    leaked = set(virtual.channels) - before
    assert not leaked, f"virtual CAN bus left open on channel(s) {sorted(leaked)}"
