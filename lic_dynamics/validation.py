"""Input validation for both packages: one :class:`InvalidValue` naming the parameter, the value
and what is allowed.

The exception carries the parameter's *name in the library* (``lr``, ``k``, ``max_embedded``); a
command line names the flag that sets it instead (:func:`lic_dynamics.cli.error_line`), so no
message text is ever parsed to find out which input was wrong.

Examples:
    >>> real("lr", 0.5, "(0, inf)", low=0, high=float("inf"))
    0.5
    >>> integer("k", 5.0, minimum=1)
    5
    >>> try:
    ...     integer("k", 0, minimum=1)
    ... except InvalidValue as error:
    ...     print(error.parameter, "|", error)
    k | k must be an integer in [1, 2**53], got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

# Integers stay below 2**53 so that every engine can use them in float64 arithmetic exactly.
MAX_INTEGER = 2**53


class InvalidValue(ValueError):
    """A bad value for the parameter ``parameter``; ``str(error)`` is the whole one-line message.

    Args:
        parameter: the parameter's name in the library (``"lr"``; a field of a configuration).
        detail: what is wrong, after the name: ``"must be in (0, inf), got -1.0"``.
        index: the offending entry of an array parameter (shown as ``lr[3]``), if any.
    """

    def __init__(self, parameter: str, detail: str, *, index: int | None = None) -> None:
        self.parameter = parameter
        self.detail = detail
        self.index = index
        super().__init__(self.named(parameter))

    def named(self, name: str) -> str:
        """The message with ``name`` (a flag, say ``--lr``) in place of the parameter's name."""
        where = name if self.index is None else f"{name}[{self.index}]"
        return f"{where} {self.detail}"

    def renamed(self, parameter: str) -> InvalidValue:
        """The same error about ``parameter`` (a configuration nested in another names its field)."""
        return InvalidValue(parameter, self.detail, index=self.index)


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
        raise InvalidValue(name, f"must be a real number in {allowed}, got {value!r}")
    interval = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    return float(interval_array(name, float(value), allowed, **interval))


def integer(name: str, value: object, *, minimum: int, maximum: int = MAX_INTEGER) -> int:
    """``value`` as an int in [minimum, maximum] (integral floats such as 5.0 are accepted)."""
    top = "2**53" if maximum == MAX_INTEGER else str(maximum)
    allowed = f"an integer in [{minimum}, {top}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidValue(name, f"must be {allowed}, got {value!r}")
    if not math.isfinite(value) or not float(value).is_integer():
        raise InvalidValue(name, f"must be {allowed}, got {value!r}")
    if not minimum <= value <= maximum:
        raise InvalidValue(name, f"must be {allowed}, got {value!r}")
    return int(value)


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 1, 0 or a string); else raise."""
    if not isinstance(value, bool):
        raise InvalidValue(name, f"must be True or False, got {value!r}")
    return value


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``; else raise listing them."""
    if value not in allowed:
        raise InvalidValue(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def array(name: str, values: object, *, positive: bool) -> np.ndarray:
    """``values`` as a new float64 array (never a view of the caller's), all finite and > 0
    (``positive``) or >= 0; else raise naming the first offending entry."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim > 1:
        raise InvalidValue(name, f"must be a scalar or a 1-D array, got shape {arr.shape}")
    flat = np.atleast_1d(arr)
    if flat.size == 0:
        raise InvalidValue(name, "must have at least one entry, got an empty array")
    ok = np.isfinite(flat) & ((flat > 0) if positive else (flat >= 0))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        allowed = "finite and > 0" if positive else "finite and >= 0"
        raise InvalidValue(
            name, f"must be {allowed}, got {float(flat[i])!r}", index=i if flat.size > 1 else None
        )
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
        raise InvalidValue(
            name,
            f"must be in {allowed}, got {float(flat[i])!r}",
            index=i if flat.size > 1 else None,
        )
    return arr


def integer_array(name: str, values: object, *, minimum: int) -> np.ndarray:
    """``values`` (scalar or array) as int64, every entry an integer in [minimum, 2**53]."""
    arr = np.asarray(values)
    flat = np.atleast_1d(arr).astype(np.float64)
    ok = np.isfinite(flat) & (flat == np.round(flat)) & (flat >= minimum) & (flat <= MAX_INTEGER)
    if arr.dtype == bool or not ok.all():
        i = 0 if arr.dtype == bool else int(np.flatnonzero(~ok)[0])
        got = np.atleast_1d(arr)[i]
        raise InvalidValue(
            name,
            f"must be an integer in [{minimum}, 2**53], got {getattr(got, 'item', lambda: got)()!r}",
            index=i if flat.size > 1 else None,
        )
    return arr.astype(np.int64)
