"""What a command will cost, worked out from its flags before anything is allocated; the refusal of
what this machine cannot hold or would take more than a year over; and the lines that say how long
a long run has left.

An estimate is a :class:`Cost`: bytes at the peak and seconds of work. The models and their constants
sit next to the work they describe (:func:`simulate_cost` here, :func:`nqm.scaling.cost`); the
constants were measured on a 2-core x86-64 machine and round up, so a refusal is for a run that
would need at least about that much. :func:`refuse` turns a cost that exceeds the memory available
now (:func:`available_memory`) or :data:`YEAR` into one :class:`~lic_dynamics.cli.UsageError` line
that names the flags. :class:`Progress` prints the estimate when it is over :data:`QUIET` seconds,
then a measured line every :data:`EVERY` seconds.

Examples:
    >>> cost = simulate_cost(dim=1000, steps=1000, chains=100, points=20)
    >>> round(cost.seconds), gib(cost.bytes)
    (7, '0.0 GiB')
    >>> refuse("nqm simulate", Cost(2e12, 1.0), "--dim 1000000000", "--dim", memory=2**34)
    Traceback (most recent call last):
    ...
    lic_dynamics.cli.UsageError: nqm simulate: error: --dim 1000000000 needs about 1863 GiB of ...
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lic_dynamics.cli import UsageError

YEAR = 365.25 * 86400.0  # s: work estimated beyond this is refused as bad input
QUIET = 10.0  # s: a run estimated (or measured) to take longer says so
EVERY = 60.0  # s: and then prints a line this often
GIB = 2**30

# nqm simulate, measured (docs/reliability.md): the exact moments cost about 60 us of Python per
# step plus 1 us per coordinate and step (batched 3x3 products); a Monte Carlo chunk about 30 us per
# step plus 60 ns per coordinate, chain and step (the noise draw and the update: 30 ns for SGD,
# up to 140 ns for Lookahead over momentum or a preconditioner).
EXACT_STEP_S, EXACT_COORD_S = 60e-6, 1e-6
CHUNK_STEP_S, CHAIN_COORD_S = 30e-6, 60e-9
LOG_STEP_S = 50e-9  # per point of the log-spaced grid of reported steps (a geomspace and a sort)
# Peak bytes: 800 per coordinate for the exact moments (probes, maps and covariances of (d, 3, 4)
# and (d, 3, 3) float64), 80 per number of a Monte Carlo chunk (state, noise and temporaries), 32
# per coordinate and reported step (the running mean and sum of squares, and the results), 32 per
# point of the log-spaced grid, and 1 MiB for the rest (small arrays, per-chain losses).
EXACT_COORD_B, CHUNK_NUMBER_B, ROW_COORD_B, LOG_STEP_B, FIXED_B = 800, 80, 32, 32, 2**20


@dataclass(frozen=True)
class Cost:
    """An estimate: ``bytes`` at the peak, ``seconds`` of work on this machine.

    Examples:
        >>> estimate = Cost(bytes=3 * GIB, seconds=90.0)
        >>> gib(estimate.bytes), duration(estimate.seconds)
        ('3.0 GiB', '90 s')
    """

    bytes: float
    seconds: float


def simulate_cost(dim: int, steps: int, chains: int, points: int) -> Cost:
    """The cost of ``nqm simulate``: the exact moments over every step, then ``chains`` chains in
    chunks of ``montecarlo.CHUNK_NUMBERS`` numbers (at least one chain), reporting ``R`` steps
    (those of :func:`nqm.verify.log_steps` where there are at most 2^20 points, else the bound
    ``min(points, steps) + 1``). With ``c = min(chains, max(1, 2^20 // d))`` chains per chunk
    and ``R`` rows, bytes ``= 1 MiB + 800 d + 80 c d + 32 R d + 32 points`` and seconds
    ``= steps (60 us + 1 us d) + steps (chunks 30 us + 60 ns chains d) + 50 ns points``.

    Examples:
        >>> cost = simulate_cost(dim=10**9, steps=10, chains=10, points=20)
        >>> gib(cost.bytes), duration(cost.seconds)
        ('1147 GiB', '4.4 hours')
        >>> duration(simulate_cost(dim=1000, steps=10**12, chains=100, points=20).seconds)
        '225 years'
    """
    from nqm import montecarlo, verify  # numpy and scipy: only when a command needs them

    per_chunk = min(chains, max(1, montecarlo.CHUNK_NUMBERS // dim))
    chunks = -(-chains // per_chunk)
    grid = 0 if verify.every_step(steps, points) else points
    if steps and grid <= montecarlo.CHUNK_NUMBERS:  # the steps themselves: 8 MiB at most
        rows = verify.log_steps(steps, points).size
    else:  # a bound: at most every step, at most one a point and step 0
        rows = min(points, steps) + 1
    nbytes = (
        FIXED_B
        + EXACT_COORD_B * dim
        + CHUNK_NUMBER_B * per_chunk * dim
        + ROW_COORD_B * rows * dim
        + LOG_STEP_B * grid
    )
    exact = steps * (EXACT_STEP_S + EXACT_COORD_S * dim)
    chained = steps * (chunks * CHUNK_STEP_S + CHAIN_COORD_S * chains * dim)
    return Cost(float(nbytes), exact + chained + LOG_STEP_S * grid)


def available_memory() -> int | None:
    """Bytes this process may still take: ``MemAvailable`` of ``/proc/meminfo`` (free memory plus
    what the kernel can reclaim), lowered to ``memory.max - memory.current`` of a cgroup v2 limit
    (a container's); where there is no ``/proc/meminfo``, the physical memory
    (``SC_PHYS_PAGES * SC_PAGE_SIZE``); None if none of these can be read.

    Examples:
        >>> available_memory() is None or available_memory() > 0
        True
    """
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
            found = None
    limit = _cgroup_room()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the cgroup v2 limit of this process leaves, or None where there is none."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def refuse(command: str, cost: Cost, named: str, advice: str, *, memory: int | None = None) -> None:
    """Raise a one-line :class:`~lic_dynamics.cli.UsageError` if ``cost`` needs more bytes than
    ``memory`` (default: :func:`available_memory`) or more than :data:`YEAR` of work. ``named``:
    the flags that set the cost with their values (:func:`name_flags`); ``advice``: what to lower.

    Examples:
        >>> refuse("nqm simulate", Cost(1e3, 4e7), "--steps 1000000000000", "--steps", memory=1e9)
        Traceback (most recent call last):
        ...
        lic_dynamics.cli.UsageError: nqm simulate: error: --steps 1000000000000 would take about ...
    """
    room = available_memory() if memory is None else memory
    if room is not None and cost.bytes > room:
        raise UsageError(
            f"{command}: error: {named} needs about {gib(cost.bytes)} of memory; this machine "
            f"has {gib(room)} available (lower {advice})"
        )
    if cost.seconds > YEAR:
        raise UsageError(
            f"{command}: error: {named} would take about {duration(cost.seconds)} here, and "
            f"work over a year is refused (lower {advice})"
        )


def name_flags(flags: Sequence[tuple[str, float, float]]) -> str:
    """``--a 1 with --b 2 and --c 3``, the flag furthest above its default first.

    Examples:
        >>> name_flags([("--dim", 1000, 1000), ("--chains", 10**12, 100), ("--steps", 10, 1000)])
        '--chains 1000000000000 with --dim 1000 and --steps 10'
    """
    ranked = sorted(flags, key=lambda f: -f[1] / f[2] if f[2] else -math.inf)
    words = [f"{flag} {value}" for flag, value, _ in ranked]
    return words[0] if len(words) == 1 else f"{words[0]} with {and_list(words[1:])}"


def and_list(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``.

    Examples:
        >>> and_list(["--lr 0.5"]), and_list(["--lr 0.5", "--c 2.0", "--k 3"])
        ('--lr 0.5', '--lr 0.5, --c 2.0 and --k 3')
    """
    return words[-1] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def gib(nbytes: float) -> str:
    """Bytes in GiB: one decimal below 10, whole above.

    Examples:
        >>> gib(3.5 * 2**30), gib(2e12)
        ('3.5 GiB', '1863 GiB')
    """
    value = nbytes / GIB
    return f"{value:.1f} GiB" if value < 10 else f"{value:.0f} GiB"


def duration(seconds: float) -> str:
    """A length of time in the largest unit that is at least two of it: seconds, minutes, hours,
    days or years; one decimal below 10, a power of ten above a million.

    Examples:
        >>> duration(42), duration(150), duration(3 * 3600), duration(4e7), duration(3e15)
        ('42 s', '2.5 minutes', '3.0 hours', '1.3 years', '9.5e+07 years')
    """
    unit, size = "s", 1.0
    for name, length in (("minutes", 60.0), ("hours", 3600.0), ("days", 86400.0), ("years", YEAR)):
        if seconds >= (1.0 if name == "years" else 2.0) * length:
            unit, size = name, length
    value = seconds / size
    if unit == "s":
        return f"{value:.0f} s"
    if value >= 1e6:
        return f"{value:.1e} {unit}"
    text = f"{value:.1f}"
    return f"{text if float(text) < 10 else f'{value:.0f}'} {unit}"


class Progress:
    """Lines on stderr for a long run: before it starts, the estimate when it is over ``quiet``
    seconds; then, from the work done so far, the time left every ``every`` seconds (and once when
    the run turns out to need more than ``quiet`` seconds though its estimate did not). Work is
    counted in the estimate's seconds: the run calls :meth:`advance` with the estimated cost of each
    piece it finishes, so the time left is measured, not assumed.

    Examples:
        >>> import io
        >>> stream = io.StringIO()
        >>> progress = Progress("nqm simulate", 600.0, "fewer --chains", stream=stream)
        >>> progress.begin()
        >>> stream.getvalue()
        'nqm simulate: this will take about 10 minutes (Ctrl-C stops; fewer --chains)\\n'
        >>> progress.advance(60.0)  # a tenth done at once: no minute has passed, silent
        >>> stream.getvalue().count("\\n")
        1
    """

    def __init__(
        self,
        command: str,
        seconds: float,
        hint: str,
        *,
        quiet: float = QUIET,
        every: float = EVERY,
        stream: TextIO | None = None,
    ) -> None:
        self.command, self.total, self.hint = command, max(seconds, 1e-9), hint
        self.quiet, self.every, self.stream = quiet, every, stream
        self.done = 0.0
        self.start = self.printed = time.monotonic()
        self.spoken = False

    def begin(self) -> None:
        """The estimate's line, if it is over ``quiet`` seconds; call just before the work."""
        self.start = self.printed = time.monotonic()
        if self.total > self.quiet:
            self._say(f"this will take about {duration(self.total)}")

    def advance(self, work: float) -> None:
        """Count ``work`` (estimated seconds) as done; print a line when one is due."""
        self.done += work
        now = time.monotonic()
        elapsed = now - self.start
        if self.done <= 0 or self.done >= self.total:
            return
        left = elapsed / self.done * (self.total - self.done)
        if self.spoken:
            due = now - self.printed >= self.every
        else:  # a second of measuring before trusting the rate
            due = elapsed >= 1.0 and left > self.quiet
        if due:
            self.printed = now
            share = 100.0 * self.done / self.total
            self._say(f"{share:.0f}% done, about {duration(left)} left")

    def _say(self, what: str) -> None:
        self.spoken = True
        print(
            f"{self.command}: {what} (Ctrl-C stops; {self.hint})",
            file=self.stream or sys.stderr,
            flush=True,
        )
