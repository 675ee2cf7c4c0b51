"""SIGTERM as an exception, so that a terminated command cleans up as after Ctrl-C.

By default SIGTERM (``kill``, a job scheduler's time limit, ``timeout``) ends a Python process at
once: no ``finally`` block runs, so a file being written keeps its temporary name
(:mod:`lic_dynamics.files`) and DataLoader workers are orphaned. Inside :func:`sigterm_raises`
SIGTERM raises :class:`Terminated` in the main thread instead.

Examples:
    >>> import os, signal
    >>> with sigterm_raises():
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ...     except Terminated:
    ...         print("cleaned up")
    cleaned up
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_STATUS = 128 + signal.SIGTERM  # a shell's status for a process ended by SIGTERM


class Terminated(BaseException):
    """The process received SIGTERM (a ``BaseException``, like ``KeyboardInterrupt``: no
    ``except Exception`` swallows it)."""


def _raise(signum: int, frame: object) -> None:
    raise Terminated("terminated (SIGTERM)")


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` for the rest of this process (a worker process's
    initializer); only the main thread can install a handler, elsewhere nothing changes."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` inside the block; the previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
