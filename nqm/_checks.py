"""Input validation shared by the library: one clear ``ValueError`` naming the parameter, the value
and what is allowed. The CLI turns these into one line on stderr and exit status 2."""

from __future__ import annotations

import math
import numbers

import numpy as np


def real(
    name: str,
    value: object,
    allowed: str,
    *,
    low: float,
    high: float,
    low_open: bool = True,
    high_open: bool = True,
) -> float:
    """``value`` as a float inside the interval (low, high), with openness as given; else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number in {allowed}, got {value!r}")
    interval = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    return float(interval_array(name, float(value), allowed, **interval))


# Integers stay below 2**53 so that every engine can use them in float64 arithmetic exactly.
MAX_INTEGER = 2**53


def integer(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int in [minimum, 2**53] (integral floats such as 5.0 are accepted)."""
    allowed = f"an integer in [{minimum}, 2**53]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if not minimum <= value <= MAX_INTEGER:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def array(name: str, values: object, *, positive: bool) -> np.ndarray:
    """``values`` as a new float64 array (never a view of the caller's), all finite and > 0
    (``positive``) or >= 0; else raise naming the first offending entry."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}")
    flat = np.atleast_1d(arr)
    if flat.size == 0:
        raise ValueError(f"{name} must have at least one entry, got an empty array")
    ok = np.isfinite(flat) & ((flat > 0) if positive else (flat >= 0))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        where = f"{name}[{i}]" if flat.size > 1 else name
        allowed = "finite and > 0" if positive else "finite and >= 0"
        raise ValueError(f"{where} must be {allowed}, got {float(flat[i])!r}")
    return arr


def interval_array(
    name: str,
    values: object,
    allowed: str,
    *,
    low: float,
    high: float,
    low_open: bool = True,
    high_open: bool = True,
) -> np.ndarray:
    """``values`` (scalar or array) as float64, every entry inside the interval; else raise naming
    the first offending entry."""
    arr = np.asarray(values, dtype=np.float64)
    flat = np.atleast_1d(arr)
    with np.errstate(invalid="ignore"):
        ok = (flat > low if low_open else flat >= low) & (
            flat < high if high_open else flat <= high
        )
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        where = f"{name}[{i}]" if flat.size > 1 else name
        raise ValueError(f"{where} must be in {allowed}, got {float(flat[i])!r}")
    return arr


def integer_array(name: str, values: object, *, minimum: int) -> np.ndarray:
    """``values`` (scalar or array) as int64, every entry an integer in [minimum, 2**53]."""
    arr = np.asarray(values)
    flat = np.atleast_1d(arr).astype(np.float64)
    ok = np.isfinite(flat) & (flat == np.round(flat)) & (flat >= minimum) & (flat <= MAX_INTEGER)
    if arr.dtype == bool or not ok.all():
        i = 0 if arr.dtype == bool else int(np.flatnonzero(~ok)[0])
        where = f"{name}[{i}]" if flat.size > 1 else name
        got = np.atleast_1d(arr)[i]
        raise ValueError(
            f"{where} must be an integer in [{minimum}, 2**53], got {getattr(got, 'item', lambda: got)()!r}"
        )
    return arr.astype(np.int64)
