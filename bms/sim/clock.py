"""One scheduler, two clocks: virtual time and real time.

Every node registers its periodic tasks (firmware tasks, cyclic frames) and
one-off events with the :class:`Scheduler`. Events run in time order; at
equal times the shorter period goes first (rate-monotonic, as an ECU's
scheduler and CAN arbitration favour the fast messages: a 10 ms frame does
not wait behind a burst of 100 ms pages), then the order they were
scheduled in, so a run is deterministic.

- **virtual time** (``speed=None``): the clock jumps from one event to the
  next, as fast as the CPU allows. Nothing reads the wall clock, so the same
  seed gives the same sequence of events and frames.
- **real time** (``speed`` a factor, 1.0 = real time): event ``t`` runs at
  the absolute wall deadline ``t0 + t / speed``, never relative to the last
  one, so periods do not drift. A periodic task that starts later than its
  next deadline has overrun: the overrun is counted and the missed periods
  are skipped, as a real ECU does (no catch-up burst after a stall).

Between events the loop calls ``idle(until_s)``; in real time that is where
the caller waits for received frames (it must return by the deadline).

Periodic tasks with the same period and first deadline share one queue entry
(a *slot*): a *group* per priority, in priority order, each group's tasks in
the order they were scheduled. An ECU has a handful of rates, and the
emulator's some 700 task runs per simulated second are some 270 queue
entries. Before each group after the first, a slot gives way to any other
entry due at the same time ahead of that group (it goes back into the queue
there), and every group keeps the sequence number its own entry would have
had, so the order is the rule above, exactly as with an entry per priority.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ClockStats", "Scheduler", "Task"]

_EPS_S = 1e-9


@dataclass
class ClockStats:
    """What the clock did: events run, overruns and skipped periods (real time)."""

    events: int = 0
    overruns: int = 0  # periodic runs that started after their next deadline
    skipped_periods: int = 0  # deadlines dropped after an overrun (no catch-up)
    late_s: list[float] = field(default_factory=list)  # lateness samples (real time)
    max_late_s: float = 0.0


@dataclass(eq=False)
class Task:
    """A periodic task: ``fn(t_s)`` every ``period_s`` from ``start_s``."""

    name: str
    period_s: float
    fn: Callable[[float], None]
    start_s: float
    priority: float  # at equal times, lower first
    runs: int = 0
    skipped: int = 0
    active: bool = True
    slot: _Slot | None = None

    @property
    def next_s(self) -> float:
        """The next deadline."""
        return self.slot.next_s if self.slot is not None else self.start_s


@dataclass(eq=False)
class _Group:
    """The tasks of one priority in a slot, in the order scheduled: they run as one."""

    priority: float
    # the sequence number this priority's own queue entry would carry (taken when it
    # last ran, or was scheduled): it orders the group against other entries of the
    # same time and priority
    seq: int
    tasks: list[Task] = field(default_factory=list)


@dataclass(eq=False)
class _Slot:
    """The periodic tasks of one period and first deadline: one queue entry, its groups
    in priority order; ``pos``: the group to run next at the current deadline (> 0 while
    the slot gives way to another entry)."""

    period_s: float
    start_s: float
    next_s: float
    groups: list[_Group] = field(default_factory=list)
    k: int = 0  # deadline index: next_s = start + k * period (no accumulated drift)
    pos: int = 0
    busy: bool = False  # its tasks are running (a task scheduled now gets a slot of its own)


class Scheduler:
    """Runs tasks and events in time order on a virtual or a real-time clock."""

    def __init__(self, speed: float | None = None, record_lateness: bool = False):
        if speed is not None and not speed > 0.0:
            raise ValueError(f"speed must be > 0 (or None for virtual time), got {speed}")
        self.speed = speed
        self.now_s = 0.0
        self.stats = ClockStats()
        self._queue: list[tuple[float, float, int, _Slot | Callable[[float], None]]] = []
        self._open: dict[tuple[float, float], _Slot] = {}  # slots not run yet
        self._seq = 0
        self._wall0 = 0.0
        self._stopped = False
        self._record = record_lateness
        self.tasks: list[Task] = []
        self.idle: Callable[[float], None] | None = None  # called before waiting (real time)

    @property
    def realtime(self) -> bool:
        return self.speed is not None

    def _push(self, t_s: float, item: _Slot | Callable[[float], None], prio: float = 0.0) -> None:
        heapq.heappush(self._queue, (t_s, prio, self._seq, item))
        self._seq += 1

    def every(
        self,
        period_s: float,
        fn: Callable[[float], None],
        name: str = "",
        offset_s: float = 0.0,
        priority: float | None = None,
    ) -> Task:
        """Run ``fn(t_s)`` every ``period_s``, first at now + ``offset_s``. At equal times
        the lower ``priority`` runs first (default: the period, rate-monotonic)."""
        if not period_s > 0.0:
            raise ValueError(f"task {name or fn!r}: period must be > 0 s, got {period_s}")
        start = self.now_s + offset_s
        prio = period_s if priority is None else priority
        task = Task(name or getattr(fn, "__name__", "task"), period_s, fn, start, prio)
        key = (period_s, start)
        slot = self._open.get(key)
        # a slot takes a task only before it has run, and not ahead of its first group
        # (its queue entry is keyed on that group's priority)
        if slot is None or slot.k or slot.pos or slot.busy or prio < slot.groups[0].priority:
            slot = self._open[key] = _Slot(period_s, start, start)
            self._push(start, slot, prio)
            slot.groups.append(_Group(prio, self._seq - 1))
        groups = slot.groups
        at = len(groups)
        while groups[at - 1].priority > prio:
            at -= 1
        if groups[at - 1].priority != prio:  # a new priority: an entry of its own, as it were
            groups.insert(at, _Group(prio, self._seq))
            self._seq += 1
            at += 1
        groups[at - 1].tasks.append(task)
        task.slot = slot
        self.tasks.append(task)
        return task

    def at(self, t_s: float, fn: Callable[[float], None]) -> None:
        """Run ``fn(t_s)`` once at ``t_s`` (now, if ``t_s`` is in the past)."""
        self._push(max(t_s, self.now_s), fn)

    def stop(self) -> None:
        """Make :meth:`run_until` return after the event that is running."""
        self._stopped = True

    def wall_elapsed_s(self) -> float:
        return time.perf_counter() - self._wall0

    def run_until(self, end_s: float) -> float:
        """Run every event up to and including ``end_s``; returns the time reached. (The
        loop runs some 270 slots per simulated second: a slot's run is inlined.)"""
        self._stopped = False
        rt = self.speed is not None
        if rt and self.stats.events == 0:
            self._wall0 = time.perf_counter() - self.now_s / self.speed  # type: ignore[operator]
        queue = self._queue
        stats = self.stats
        pop, push = heapq.heappop, heapq.heappush
        limit = end_s + _EPS_S
        while queue and not self._stopped:
            t, _, _, item = queue[0]
            if t > limit:
                break
            if rt:
                self._wait_until(t)
                if self._stopped:
                    break
            pop(queue)
            self.now_s = t
            stats.events += 1
            if not isinstance(item, _Slot):
                item(t)
                continue
            groups = item.groups
            j = item.pos
            n = len(groups)
            item.busy = True
            while True:
                group = groups[j]
                for task in group.tasks:
                    if task.active:
                        task.fn(t)
                        task.runs += 1
                group.seq = self._seq  # done: the number its own entry would take now
                self._seq += 1
                j += 1
                if j == n:
                    break
                group = groups[j]
                if self._stopped or (queue and queue[0] < (t, group.priority, group.seq)):
                    break  # give way: back into the queue at this group
            item.busy = False
            if j < n:
                item.pos = j
                push(queue, (t, group.priority, group.seq, item))
                continue
            item.pos = 0
            item.k += 1
            nxt = item.start_s + item.k * item.period_s
            if rt:
                nxt = self._skip_overrun(item, nxt)
            item.next_s = nxt
            group = groups[0]
            push(queue, (nxt, group.priority, group.seq, item))
        if not self._stopped and self.now_s < end_s:
            if rt:
                self._wait_until(end_s)
            self.now_s = max(self.now_s, end_s)
        return self.now_s

    def _skip_overrun(self, slot: _Slot, nxt: float) -> float:
        """Real time: tasks that ran past their next deadline skip the periods they missed
        (counted per task), as an ECU does, instead of catching up; returns the next
        deadline."""
        now_sim = (time.perf_counter() - self._wall0) * self.speed  # type: ignore[operator]
        if now_sim <= nxt + _EPS_S:
            return nxt
        missed = int((now_sim - nxt) / slot.period_s) + 1
        for task in (task for group in slot.groups for task in group.tasks):
            if task.active:
                self.stats.overruns += 1
                self.stats.skipped_periods += missed
                task.skipped += missed
        slot.k += missed
        return slot.start_s + slot.k * slot.period_s

    def _wait_until(self, t_s: float) -> None:
        speed = self.speed
        assert speed is not None
        deadline = self._wall0 + t_s / speed
        while not self._stopped:
            remaining = deadline - time.perf_counter()
            if remaining <= 0.0:
                break
            if self.idle is not None:
                self.idle(remaining)  # waits for frames at most `remaining` seconds
            elif remaining > 0.002:
                time.sleep(remaining - 0.001)
        late = time.perf_counter() - deadline
        if self._record:
            self.stats.late_s.append(late)
        if late > self.stats.max_late_s:
            self.stats.max_late_s = late

    def cancel(self, task: Task) -> None:
        task.active = False
