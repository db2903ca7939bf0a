"""A stall in real time reaches the user: the status line, the summary and the JSON
summary give the overruns and the periods skipped."""

from __future__ import annotations

import json
import time

from bms.cli.run import summary_text
from bms.config import Config, PackConfig
from bms.sim.emulator import Emulator


def test_a_real_time_stall_is_reported_as_overruns() -> None:
    cfg = Config(pack=PackConfig(series=6, initial_soc=0.6))
    with Emulator(cfg, nodes=("pack", "bms", "vcu"), speed=1.0) as emu:
        node = emu.nodes["bms"]
        tick = node.tick
        stalled: list[float] = []

        def slow_tick(t_s: float) -> None:  # the firmware's 10 ms task hangs once, 120 ms
            if t_s >= 0.4 and not stalled:
                stalled.append(t_s)
                time.sleep(0.12)
            tick(t_s)

        node.tick = slow_tick  # type: ignore[method-assign]
        res = emu.run(0.8)
        status = emu.status_line()
    assert stalled, "the stall did not happen"
    # every task of the 10 ms rates missed about 11 of its deadlines: counted once each,
    # those periods skipped, not sent in a burst
    assert res.overruns >= 1
    assert res.skipped_periods >= 10
    assert f"overruns {res.overruns}" in status
    assert f"{res.overruns} overruns, {res.skipped_periods} periods skipped" in summary_text(
        res, emu
    )
    d = json.loads(json.dumps(res.to_dict()))
    assert (d["overruns"], d["skipped_periods"]) == (res.overruns, res.skipped_periods)
