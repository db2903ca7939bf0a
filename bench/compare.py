"""``python -m bench.compare REV [--rounds N] [--seconds S] [--pack NAME]``: the emulator's
virtual-time speed of the working tree against git revision ``REV``, in one sitting.

On a shared machine the speed of one run varies by up to 2x from one minute to the
next, more than most changes gain, so two figures taken minutes apart say little.
This runs both versions at once, each in its own process on its own copy of the code
(``REV`` checked out into a temporary git worktree), and lets them take turns: each
round runs ``S`` simulated seconds of the bus pack (all nodes, a python-can virtual
bus) in one, then in the other (which goes first alternates from round to round), and
reads the CPU time each used. A slow minute then slows both alike; the median of the
rounds' ratios and their range are printed.

Before the rounds, each version counts the Python bytecodes it executes in two
simulated seconds (the same two: 10 to 12 s). That count does not depend on the
machine's mood, so a change of a few per cent in the interpreter's work shows even
when the CPU times cannot tell (numba kernels and C functions count only as the
bytecodes that call them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

# the worker: builds one emulator, then runs ``S`` simulated seconds per line it reads
# and answers with the CPU seconds they took
_WORKER = (
    (_ROOT / "bench" / "opcount.py").read_text()
    + """
import sys, time
import can, numpy as np
from bms.config import preset
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase
cfg = preset(sys.argv[1])
one_c = 280.0 * cfg.pack.parallel
n = 10_000_000
prof = np.where((np.arange(n) // 100) % 2 == 0, 0.5 * one_c, 0.1 * one_c)
mission = Mission("compare", [Phase("drive", n * 0.1, prof, 0.1)], one_c, ready_s=1.0)
bus = can.Bus(interface="virtual", channel="compare", receive_own_messages=False)
emu = Emulator(cfg, bus=bus, mission=mission)
emu.start()
emu.run(10.0)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "ops":  # Python bytecodes per simulated second, over 2 s
        print(bytecodes_per_s(emu, 2.0), flush=True)
        continue
    c0 = time.process_time()
    emu.run(emu.scheduler.now_s + float(line))
    print(time.process_time() - c0, flush=True)
emu.close()
bus.shutdown()
"""
)


def _worker(code_dir: Path, pack: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, pack],
        cwd=code_dir,
        env={**os.environ, "PYTHONPATH": str(code_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the emulator of {code_dir} did not start")
    return proc


def _turn(proc: subprocess.Popen[str], seconds: float | str) -> float:
    """One turn of ``seconds`` simulated seconds (its CPU seconds), or ``"ops"``: the
    bytecodes per simulated second over the next two."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{seconds}\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(
            f"an emulator stopped mid-run (exit code {proc.wait()}); see its error above"
        )
    return float(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("rev", help="git revision to compare the working tree with (e.g. HEAD~3)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per turn")
    ap.add_argument("--pack", default="bus", help="preset: bus or container")
    args = ap.parse_args(argv)
    if args.rounds < 1 or not args.seconds > 0:
        ap.error("--rounds must be at least 1 and --seconds above 0")
    with tempfile.TemporaryDirectory(prefix="bms-compare-") as tmp:
        old_dir = Path(tmp) / "old"
        made = subprocess.run(
            ["git", "-C", str(_ROOT), "worktree", "add", "--detach", str(old_dir), args.rev],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            why = (made.stderr.strip().splitlines() or ["git failed"])[-1]
            raise SystemExit(f"cannot check out {args.rev!r} ({why}); name a git revision")
        try:
            procs = {"this tree": _worker(_ROOT, args.pack), args.rev: _worker(old_dir, args.pack)}
            ops = {name: _turn(proc, "ops") for name, proc in procs.items()}
            times: dict[str, list[float]] = {k: [] for k in procs}
            for k in range(args.rounds):  # who goes first alternates: the first turn of a
                # round measured a few per cent faster, even for identical code
                order = list(procs.items())
                for name, proc in order if k % 2 == 0 else order[::-1]:
                    times[name].append(_turn(proc, args.seconds) / args.seconds * 1000.0)
            for proc in procs.values():
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=30)
        finally:
            subprocess.run(
                ["git", "-C", str(_ROOT), "worktree", "remove", "--force", str(old_dir)],
                capture_output=True,
            )
    new, old = times["this tree"], times[args.rev]
    ratios = [a / b for a, b in zip(new, old, strict=True)]
    turns = f"{args.rounds} turns of {args.seconds} s"
    print(f"CPU ms per simulated second, {args.pack} pack, {turns}:")
    for name, values in times.items():
        print(
            f"  {name:12s} best {min(values):6.2f} (x{1000 / min(values):.1f})"
            f"  median {statistics.median(values):6.2f}"
        )
    print(  # the range shows a slow spell of the machine that hit one side more
        f"  this tree / {args.rev}: median of the rounds' ratios {statistics.median(ratios):.3f}"
        f" (rounds {min(ratios):.3f} to {max(ratios):.3f};"
        f" best against best {min(new) / min(old):.3f})"
    )
    print(
        "Python bytecodes per simulated second (10 to 12 s; the same on any machine):"
        f" this tree {ops['this tree']:,.0f}, {args.rev} {ops[args.rev]:,.0f},"
        f" ratio {ops['this tree'] / ops[args.rev]:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
