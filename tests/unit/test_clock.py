"""The scheduler: order, exact periods, virtual time, real time without catch-up bursts."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time

import pytest

from bms.sim.clock import Scheduler


def test_equal_times_run_the_shorter_period_first() -> None:
    sch = Scheduler()
    seen = []
    sch.every(0.1, lambda t: seen.append("slow"), name="slow")
    sch.every(0.01, lambda t: seen.append("fast"), name="fast")
    sch.run_until(0.0)
    assert seen == ["fast", "slow"]


def test_virtual_time_runs_events_in_time_order_and_fifo_on_ties() -> None:
    sch = Scheduler()
    seen = []
    sch.every(0.1, lambda t: seen.append(("a", round(t, 9))), name="a")
    sch.every(0.25, lambda t: seen.append(("b", round(t, 9))), name="b", offset_s=0.05)
    sch.at(0.2, lambda t: seen.append(("once", round(t, 9))))
    sch.run_until(0.5)
    assert seen == [
        ("a", 0.0),
        ("b", 0.05),
        ("a", 0.1),
        ("once", 0.2),  # one-off events first, then the shorter period
        ("a", 0.2),
        ("b", 0.3),  # 0.05 + 0.25 == 0.3 < 3 * 0.1 in floating point
        ("a", 0.3),
        ("a", 0.4),
        ("a", 0.5),
    ]
    assert sch.now_s == 0.5


def test_periods_do_not_drift_over_a_million_runs() -> None:
    sch = Scheduler()
    times = []
    task = sch.every(0.01, times.append)
    sch.run_until(10_000.0)
    assert task.runs == 1_000_001
    assert times[-1] == pytest.approx(10_000.0, abs=1e-9)  # k * period, not a running sum


def test_run_until_stops_at_the_end_and_resumes() -> None:
    sch = Scheduler()
    times = []
    sch.every(1.0, times.append)
    sch.run_until(2.5)
    assert times == [0.0, 1.0, 2.0] and sch.now_s == 2.5
    sch.run_until(4.0)
    assert times == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_cancelled_task_stops() -> None:
    sch = Scheduler()
    times = []
    task = sch.every(1.0, times.append)
    sch.run_until(1.0)
    sch.cancel(task)
    sch.run_until(5.0)
    assert times == [0.0, 1.0]


def test_bad_period_and_speed_are_refused() -> None:
    with pytest.raises(ValueError, match="period must be > 0"):
        Scheduler().every(0.0, print)
    with pytest.raises(ValueError, match="speed must be > 0"):
        Scheduler(speed=0.0)


def test_real_time_skips_missed_periods_after_a_stall_instead_of_bursting() -> None:
    sch = Scheduler(speed=1.0)
    wall = []
    stalled = []

    def task(t: float) -> None:
        wall.append(time.perf_counter())
        if abs(t - 0.05) < 1e-9 and not stalled:
            stalled.append(t)
            time.sleep(0.055)  # miss five 10 ms deadlines

    sch.every(0.01, task)
    sch.run_until(0.2)
    assert sch.stats.overruns == 1
    assert sch.stats.skipped_periods == 5
    gaps = [b - a for a, b in itertools.pairwise(wall)]
    # no burst: after the stall no two runs come closer than half a period
    stall_at = next(i for i, g in enumerate(gaps) if g > 0.05)
    assert min(gaps[stall_at + 1 :]) > 0.005
    assert len(wall) == 21 - 5


def test_real_time_meets_absolute_deadlines() -> None:
    sch = Scheduler(speed=1.0, record_lateness=True)
    sch.every(0.01, lambda t: None)
    t0 = time.perf_counter()
    sch.run_until(0.3)
    elapsed = time.perf_counter() - t0
    assert elapsed == pytest.approx(0.3, abs=0.05)
    assert len(sch.stats.late_s) >= 30


def test_tasks_of_one_rate_share_a_queue_entry_and_keep_their_order() -> None:
    sch = Scheduler()
    seen = []
    for name in ("a", "b", "c"):
        sch.every(0.1, lambda t, n=name: seen.append((n, round(t, 9))), name=name)
    sch.every(0.1, lambda t: seen.append(("late", round(t, 9))), name="late", priority=10.1)
    sch.every(0.1, lambda t: seen.append(("off", round(t, 9))), name="off", offset_s=0.05)
    assert len(sch._queue) == 2  # a, b, c and late share one entry
    sch.run_until(0.1)
    assert seen == [
        ("a", 0.0), ("b", 0.0), ("c", 0.0), ("late", 0.0), ("off", 0.05),
        ("a", 0.1), ("b", 0.1), ("c", 0.1), ("late", 0.1),
    ]  # fmt: skip
    assert sch.stats.events == 3  # entries run, not tasks


def test_a_task_added_after_its_rate_has_run_keeps_its_own_times() -> None:
    sch = Scheduler()
    first, second = [], []
    sch.every(0.1, first.append, name="first")
    sch.run_until(0.05)
    task = sch.every(0.1, second.append, name="second")  # first deadline: 0.05
    sch.run_until(0.3)
    assert [round(t, 9) for t in first] == [0.0, 0.1, 0.2, 0.3]
    assert [round(t, 9) for t in second] == [0.05, 0.15, 0.25]
    assert task.runs == 3 and task.next_s == pytest.approx(0.35)


def test_a_cancelled_task_leaves_the_others_of_its_rate_running() -> None:
    sch = Scheduler()
    a, b = [], []
    task_a = sch.every(1.0, a.append)
    sch.every(1.0, b.append)
    sch.run_until(1.0)
    sch.cancel(task_a)
    sch.run_until(3.0)
    assert a == [0.0, 1.0] and b == [0.0, 1.0, 2.0, 3.0]
    assert task_a.runs == 2


def test_real_time_counts_an_overrun_for_every_task_of_a_stalled_rate() -> None:
    sch = Scheduler(speed=1.0)
    stalled = []

    def slow(t: float) -> None:
        if abs(t - 0.05) < 1e-9 and not stalled:
            stalled.append(t)
            time.sleep(0.035)  # misses three or four 10 ms deadlines

    tasks = [sch.every(0.01, slow), sch.every(0.01, lambda t: None)]
    sch.run_until(0.15)
    assert sch.stats.overruns == 2
    assert tasks[0].skipped == tasks[1].skipped >= 3
    assert sch.stats.skipped_periods == 2 * tasks[0].skipped


class _OneEntryPerPriority:
    """The rule with one queue entry per period, first deadline and priority (how the
    scheduler worked before a slot took tasks of several priorities): the reference."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.queue: list[tuple[float, float, int, object]] = []
        self.open: dict[tuple[float, float, float], list] = {}
        self.seq = 0

    def _push(self, t: float, prio: float, item: object) -> None:
        heapq.heappush(self.queue, (t, prio, self.seq, item))
        self.seq += 1

    def every(self, period, fn, name="", offset_s=0.0, priority=None):
        start = self.now_s + offset_s
        prio = period if priority is None else priority
        slot = self.open.get((period, start, prio))
        if slot is None or slot[3]:  # [period, start, prio, k, tasks]
            slot = self.open[(period, start, prio)] = [period, start, prio, 0, []]
            self._push(start, prio, slot)
        task = [fn, True]
        slot[4].append(task)
        return task

    def at(self, t_s, fn):
        self._push(max(t_s, self.now_s), 0.0, fn)

    def cancel(self, task) -> None:
        task[1] = False

    def run_until(self, end_s):
        while self.queue and self.queue[0][0] <= end_s + 1e-9:
            t, prio, _, item = heapq.heappop(self.queue)
            self.now_s = t
            if callable(item):
                item(t)
                continue
            for fn, active in list(item[4]):
                if active:
                    fn(t)
            item[3] += 1
            self._push(item[1] + item[3] * item[0], prio, item)
        self.now_s = max(self.now_s, end_s)


@pytest.mark.parametrize("seed", range(12))
def test_slots_of_several_priorities_keep_the_order_of_one_entry_per_priority(seed) -> None:
    """Random rates, offsets and priorities, one-off events scheduled by tasks, tasks
    added and cancelled while running: the same runs in the same order as the reference,
    which gives every priority of a rate its own queue entry."""
    runs = []
    for sch in (Scheduler(), _OneEntryPerPriority()):
        rng = random.Random(seed)
        seen: list[tuple[str, float]] = []
        handles: list[object] = []

        def make(name: str, sch=sch, rng=rng, seen=seen, handles=handles):
            def fn(t: float) -> None:
                seen.append((name, t))
                r = rng.random()
                if r < 0.05:  # a one-off event now or a little later
                    delay = rng.choice((0.0, 0.0, 0.003, 0.01))
                    sch.at(t + delay, lambda u, n=name: seen.append((n + "/once", u)))
                elif r < 0.07:  # a new task, from now on
                    k = len(handles)
                    handles.append(
                        sch.every(
                            rng.choice((0.01, 0.02, 0.1)),
                            make(f"new{k}"),
                            offset_s=rng.choice((0.001, 0.01)),  # after the one running
                            priority=rng.choice((None, 10.01, math.inf)),
                        )
                    )
                elif r < 0.075 and handles:
                    sch.cancel(rng.choice(handles))

            return fn

        for k in range(rng.randint(4, 14)):
            handles.append(
                sch.every(
                    rng.choice((0.01, 0.02, 0.05, 0.1, 0.25)),
                    make(f"t{k}"),
                    offset_s=rng.choice((0.0, 0.0, 0.005, 0.01)),
                    priority=rng.choice((None, None, 0.5, 10.01, 10.1, math.inf)),
                )
            )
        for end in (0.333, 1.0, 2.5):
            sch.run_until(end)
        runs.append(seen)
    assert len(runs[0]) > 100
    assert runs[0] == runs[1]


def test_a_task_scheduled_now_by_a_running_task_runs_once_now() -> None:
    """Scheduled from inside a running slot, at its rate and time, with a priority
    between two of its tasks: the new task runs at this instant in priority order (the
    slot gives way to it), and no task of the slot runs twice."""
    sch = Scheduler()
    seen: list[tuple[str, float]] = []

    def spawn(t: float) -> None:
        seen.append(("b", t))
        if not any(n == "new" for n, _ in seen) and t == 0.0:
            sch.every(0.1, lambda u: seen.append(("new", u)), priority=0.05)

    sch.every(0.1, lambda t: seen.append(("a", t)), priority=0.01)
    sch.every(0.1, spawn, priority=0.1)
    sch.every(0.1, lambda t: seen.append(("c", t)), priority=0.2)
    sch.run_until(0.1)
    assert seen == [
        ("a", 0.0), ("b", 0.0), ("new", 0.0), ("c", 0.0),
        ("a", 0.1), ("new", 0.1), ("b", 0.1), ("c", 0.1),
    ]  # fmt: skip
