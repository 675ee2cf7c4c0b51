"""The command-line error contract of ``nqm`` and ``lic-train``.

Bad input prints **one line** on stderr naming the flag, the value and what is allowed, and the
command exits with status 2; never a traceback, never argparse's usage block. Three kinds of error
reach that line:

* :class:`UsageError`: raised by a command itself, its message already the whole line;
* :class:`~lic_dynamics.validation.InvalidValue`: raised by the library about one of its parameters;
  :func:`error_line` names the flag that sets the parameter, found in the parser itself;
* any other ``ValueError``: the library's message, after the command's name.

Examples:
    >>> parser = Parser(prog="demo")
    >>> _ = parser.add_argument("--learning-rate", dest="lr", type=float)
    >>> from lic_dynamics.validation import InvalidValue
    >>> error_line("demo", InvalidValue("lr", "must be > 0, got -1.0"), parser)
    'demo: error: --learning-rate must be > 0, got -1.0'
    >>> try:
    ...     parser.parse_args(["--learning-rate", "x"])  # doctest: +NORMALIZE_WHITESPACE
    ... except UsageError as error:
    ...     print(error)
    demo: error: --learning-rate must be a number in ASCII decimal (such as 0.5, -2, 1e-4 or
    inf), got 'x'
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence

from lic_dynamics.validation import InvalidValue

USAGE_STATUS = 2  # the exit status of bad input


class UsageError(Exception):
    """Bad command-line input; its message is the one line the user sees (made one line by
    :func:`one_line`, whatever file names it quotes)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """``text`` with each character that is not printable (a newline or an escape in a file name)
    written as a Python string literal writes it, so that a message stays one line.

    >>> one_line("data/a\\nb.png: cannot decode")
    'data/a\\\\nb.png: cannot decode'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Numbers as a user types them, in ASCII: Python's float() and int() would also take full-width
# and Arabic-Indic digits, underscores and surrounding spaces.
_REAL = re.compile(
    r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|[+-]?(?:inf|infinity|nan)", re.ASCII | re.IGNORECASE
)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
# What argparse takes for a negative number rather than a flag (its own rule misses -1e-3 and -inf).
_NEGATIVE = re.compile(r"-(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$|-(?:inf|infinity|nan)$", re.I)


def real_number(text: str) -> float:
    """A flag's real number, in ASCII decimal (``-0`` is 0: a message never shows ``-0.0``)."""
    if not _REAL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"must be a number in ASCII decimal (such as 0.5, -2, 1e-4 or inf), got {text!r}"
        )
    return float(text) + 0.0  # -0.0 + 0.0 is 0.0


def whole_number(text: str) -> int:
    """A flag's integer, in ASCII decimal digits."""
    if (
        not _INTEGER.fullmatch(text) or len(text) > 100
    ):  # int() refuses 4300 digits with a traceback
        raise argparse.ArgumentTypeError(
            f"must be an integer in ASCII decimal digits (such as 16), got {text!r}"
        )
    return int(text)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one :class:`UsageError` line in the project's format
    (``PROG COMMAND: error: --flag ...``, the subcommand named), which reads ``type=float`` and
    ``type=int`` as ASCII decimal (:func:`real_number`, :func:`whole_number`), takes ``-1e-3`` and
    ``-inf`` as values, and takes no abbreviations: a prefix of a flag is an unknown flag
    (argparse would silently read ``--checkpoint`` as ``--checkpoint-every``)."""

    def __init__(self, *args: object, allow_abbrev: bool = False, **kwargs: object) -> None:
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)  # type: ignore[arg-type]
        # argparse looks types up in this registry (argument groups share it), and asks this
        # pattern whether a word is a negative number; neither has a public setter.
        self.register("type", float, real_number)
        self.register("type", int, whole_number)
        self._negative_number_matcher = _NEGATIVE

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown word is reported by the subcommand it was given to."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            chosen = next(
                (
                    getattr(parsed, action.dest, None)
                    for action in self._actions  # argparse offers no public walk over its actions
                    if isinstance(action, argparse._SubParsersAction)
                ),
                None,
            )
            words = " ".join(unknown)
            parser = subcommand(self, chosen)
            parser.error(f"{words}: no such flag or argument (see {parser.prog} --help)")
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {_project_format(message)}")


# argparse's own messages -> the project's: "argument --metric: invalid choice: 'x' (choose from
# 'mse', 'ms-ssim')" -> "--metric must be one of 'mse', 'ms-ssim', got 'x'".
_ARGUMENT = re.compile(r"argument (?P<names>[^:]+): (?P<rest>.*)", re.DOTALL)
_REWRITES = (
    (
        re.compile(r"invalid choice: (.*) \(choose from (.*)\)", re.DOTALL),
        r"must be one of \2, got \1",
    ),
    (re.compile(r"expected one argument"), "needs a value"),
    (re.compile(r"expected at least one argument"), "needs at least one value"),
    (re.compile(r"expected (\d+) arguments?"), r"needs \1 values"),
    (re.compile(r"not allowed with argument (.*)"), r"and \1: give one of the two"),
    (re.compile(r"ignored explicit argument (.*)"), r"takes no value, got \1"),
)


def _project_format(message: str) -> str:
    """argparse's ``message`` in the project's words, the flag first; any other kept as it is."""
    required = re.fullmatch(r"the following arguments are required: (.*)", message)
    if required:
        return f"{required[1]}: required"
    match = _ARGUMENT.fullmatch(message)
    if match is None:
        return message
    name, rest = max(match["names"].split("/"), key=len), match["rest"]
    for pattern, replacement in _REWRITES:
        if pattern.fullmatch(rest):
            rest = pattern.sub(replacement, rest)
            break
    return f"{name} {rest}"


# A shell's status for a process whose reader went away (``nqm scaling | head``): 128 + SIGPIPE.
BROKEN_PIPE_STATUS = 128 + 13


def reader_gone() -> int:
    """After a ``BrokenPipeError`` on stdout: point stdout at /dev/null, so that the flush at exit
    does not fail again, and return :data:`BROKEN_PIPE_STATUS`; nothing is printed (the reader
    took what it wanted, as ``head`` does)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return BROKEN_PIPE_STATUS


def flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every destination of ``parser`` and of its subcommands -> its longest option string
    (``"lr"`` -> ``"--learning-rate"``)."""
    found: dict[str, str] = {}
    for action in parser._actions:  # argparse offers no public walk over its actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for dest, option in flags(sub).items():
                    found.setdefault(dest, option)
        elif action.option_strings:
            found.setdefault(action.dest, max(action.option_strings, key=len))
    return found


def subcommand(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of the subcommand ``name`` of ``parser`` (``parser`` itself if it has none of
    that name): an error names the flags of the command that was run, not another's."""
    for action in parser._actions:  # argparse offers no public walk over its actions
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


def error_line(
    command: str,
    error: Exception,
    parser: argparse.ArgumentParser | None = None,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """The one line that reports ``error`` for ``command``.

    An :class:`InvalidValue` about parameter ``p`` names the flag whose destination is
    ``aliases.get(p, p)`` in ``parser``; a parameter no flag sets keeps its library name.
    """
    if isinstance(error, UsageError):
        return str(error)
    message = str(error)
    if isinstance(error, InvalidValue) and parser is not None:
        option = flags(parser).get((aliases or {}).get(error.parameter, error.parameter))
        if option is not None:
            message = error.named(option)
    return one_line(f"{command}: error: {message}")
