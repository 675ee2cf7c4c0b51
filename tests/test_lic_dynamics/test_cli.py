"""lic_dynamics.cli: one line naming the flag, found in the parser (subcommands included)."""

from __future__ import annotations

import pytest

from lic_dynamics.cli import Parser, UsageError, error_line, flags
from lic_dynamics.validation import InvalidValue


def parser() -> Parser:
    top = Parser(prog="tool")
    commands = top.add_subparsers(dest="command", parser_class=Parser)
    fit = commands.add_parser("fit")
    fit.add_argument("-lr", "--learning-rate", dest="lr", type=float)
    fit.add_argument("--sma-k", type=int)
    fit.add_argument("--model", dest="name")
    return top


def test_flags_walks_the_subcommands_and_takes_the_long_option():
    found = flags(parser())
    assert found == {
        "help": "--help",
        "lr": "--learning-rate",
        "sma_k": "--sma-k",
        "name": "--model",
    }


def test_an_invalid_value_names_the_flag_or_keeps_the_parameter():
    line = error_line("tool fit", InvalidValue("lr", "must be > 0, got -1.0"), parser())
    assert line == "tool fit: error: --learning-rate must be > 0, got -1.0"
    nested = InvalidValue("k", "must be >= 1, got 0").renamed("sma_k")
    assert (
        error_line("tool fit", nested, parser()) == "tool fit: error: --sma-k must be >= 1, got 0"
    )
    aliased = error_line("tool", InvalidValue("model", "unknown"), parser(), {"model": "name"})
    assert aliased == "tool: error: --model unknown"
    unknown = error_line("tool", InvalidValue("rho", "must be in (0, 2)"), parser())
    assert unknown == "tool: error: rho must be in (0, 2)"
    assert error_line("tool", ValueError("plain"), parser()) == "tool: error: plain"


def test_argparse_errors_are_one_usage_error_line():
    with pytest.raises(UsageError, match=r"^tool fit: error: argument --sma-k: invalid int value"):
        parser().parse_args(["fit", "--sma-k", "x"])
    with pytest.raises(UsageError) as caught:
        parser().parse_args(["fit", "--sma-k", "x"])
    assert "\n" not in str(caught.value)
    assert error_line("tool", caught.value) == str(caught.value)
