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
    ...     parser.parse_args(["--learning-rate", "x"])
    ... except UsageError as error:
    ...     print(error)
    demo: error: argument --learning-rate: invalid float value: 'x'
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from lic_dynamics.validation import InvalidValue

USAGE_STATUS = 2  # the exit status of bad input


class UsageError(Exception):
    """Bad command-line input; its message is the one line the user sees."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one :class:`UsageError` line, not a usage block,
    and which takes no abbreviations: a prefix of a flag is an unknown flag (argparse would
    silently read ``--checkpoint`` as ``--checkpoint-every``)."""

    def __init__(self, *args: object, allow_abbrev: bool = False, **kwargs: object) -> None:
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


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
    return f"{command}: error: {message}"
