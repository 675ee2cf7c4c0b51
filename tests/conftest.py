"""Hypothesis profiles for the suite, and a small real file system to fill (:func:`small_disk`).

``ci``: 25 derandomized examples per property (the whole suite in well under a minute).
``thorough``: 400 random examples per property (a few minutes); the default on a workstation.

The profile is ``$HYPOTHESIS_PROFILE`` when set, else ``ci`` when ``$CI`` is "true" or "1"
(case-insensitive), else ``thorough``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=400, deadline=None)


def _profile() -> str:
    if os.environ.get("HYPOTHESIS_PROFILE"):
        return os.environ["HYPOTHESIS_PROFILE"]
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        return "ci"
    return "thorough"


settings.load_profile(_profile())


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted at ``tmp_path / "disk"``: a real full disk (ENOSPC from the kernel,
    through whatever layer writes). Mounting needs root (or CAP_SYS_ADMIN); elsewhere the test is
    skipped, and its patched twin still runs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def fill():
    """``fill(folder)``: fill the file system of ``folder`` to its last byte (a file ``filler``)."""

    def fill(folder: os.PathLike) -> None:
        fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        chunk = 65536
        try:
            while chunk:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:  # no room for this much: try less, down to one byte
                    chunk //= 2
        finally:
            os.close(fd)

    return fill


HOLD = """
import sys, time
from lic_dynamics.files import FolderLock
with FolderLock(sys.argv[1], "out"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder():
    """``holder(folder)``: another process that holds ``folder``'s lock
    (:class:`lic_dynamics.files.FolderLock`) until the test ends; returns the process."""
    processes = []

    def hold(folder: os.PathLike) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()
        process.stdout.close()
