"""Peak memory of a training loop: ``torch.cuda.max_memory_allocated`` on a GPU, the peak resident
set size (Linux's ``VmHWM``, reset at the start) on the CPU."""

from __future__ import annotations

import ctypes
import resource
from pathlib import Path

import torch


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Memory that earlier work freed stays resident in the heap, and a training that reuses it does
    not raise the RSS: without this, the peak above the RSS before training depends on what the
    process did before (measured: 2000 tensors of 64 KiB freed, then allocated again, showed as
    0.5 MB instead of 128 MB).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak_memory(device: torch.device) -> int:
    """Start the peak-memory count of this run (several runs may share one process); returns the
    baseline in bytes (the RSS now, on the CPU; 0 on CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0
    release_free_memory()
    try:  # Linux >= 4.0: writing 5 resets the peak RSS (VmHWM) of the process to its RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0
    return (_status_kib("VmRSS") or 0) * 1024


def peak_memory(device: torch.device, baseline: int) -> tuple[int, str]:
    """Peak memory since :func:`reset_peak_memory`, in bytes, and what was measured."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    peak = _status_kib("VmHWM")
    if peak is not None and baseline:
        return peak * 1024 - baseline, "peak RSS during training above the RSS before it"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024, "peak RSS of the process (imports and data included)"
