"""lic_dynamics.cli: one line naming the flag, found in the parser (subcommands included)."""

from __future__ import annotations

import math

import pytest

from lic_dynamics.cli import Parser, UsageError, error_line, flags, one_line
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


def test_argparse_errors_are_one_usage_error_line_in_the_project_format():
    with pytest.raises(UsageError) as caught:
        parser().parse_args(["fit", "--sma-k", "x"])
    assert str(caught.value) == (
        "tool fit: error: --sma-k must be an integer in ASCII decimal digits (such as 16), got 'x'"
    )
    assert error_line("tool", caught.value) == str(caught.value)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["fit", "--learning-rate"], "tool fit: error: --learning-rate needs a value"),
        (["fot"], "tool: error: command must be one of 'fit', got 'fot'"),
        # an unknown flag is the subcommand's, not the top parser's
        (
            ["fit", "--window", "5"],
            "tool fit: error: --window 5: no such flag or argument (see tool fit --help)",
        ),
        (
            ["fit", "--sma-k", "1_0"],
            "tool fit: error: --sma-k must be an integer in ASCII decimal "
            "digits (such as 16), got '1_0'",
        ),
    ],
)
def test_argparse_messages_name_the_flag_and_what_is_allowed(argv, line):
    with pytest.raises(UsageError) as caught:
        parser().parse_args(argv)
    assert str(caught.value) == line


@pytest.mark.parametrize("text", ["１２", "٣", "1_000", " 5", "0x10", "5.0", "1e3", ""])
def test_integers_are_ascii_decimal_digits_only(text):
    with pytest.raises(UsageError, match="--sma-k must be an integer in ASCII decimal"):
        parser().parse_args(["fit", "--sma-k", text])


@pytest.mark.parametrize("text", ["１.５", "٣", "1_0", " 1", "0x1p3", "1e", "+-1", "inf5"])
def test_reals_are_ascii_decimal_only(text):
    with pytest.raises(UsageError, match="--learning-rate must be a number in ASCII decimal"):
        parser().parse_args(["fit", f"--learning-rate={text}"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("-1e-3", -1e-3), ("-inf", -math.inf), ("-.5", -0.5), ("-0", 0.0), ("1E+2", 100.0),
     ("1e-300", 1e-300), ("+3", 3.0), ("5.", 5.0)],
)  # fmt: skip
def test_negative_numbers_are_values_and_minus_zero_is_zero(text, value):
    parsed = parser().parse_args(["fit", "--learning-rate", text])
    assert parsed.lr == value
    assert math.copysign(1, parsed.lr) == math.copysign(1, value)  # -0 is +0: shown as 0.0


def test_minus_zero_is_zero_for_integers_too():
    assert str(parser().parse_args(["fit", "--sma-k", "-0"]).sma_k) == "0"


def test_one_line_escapes_what_would_break_the_line_and_keeps_the_rest():
    assert one_line("a\nb\rc\td\x1b[31m") == "a\\nb\\rc\\td\\x1b[31m"
    assert one_line("données/é 1.png") == "données/é 1.png"
    assert "\n" not in str(UsageError("tool: error: --out runs/a\nb: not a folder"))
    line = error_line("tool", ValueError("data/a\nb.png: cannot decode"))
    assert line == "tool: error: data/a\\nb.png: cannot decode"


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """``command | head``: no "Broken pipe" traceback, no line; the status a shell gives."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from lic_dynamics.cli import reader_gone\n"
        "try:\n"
        "    for _ in range(100000):\n"
        "        print('x' * 100)\n"
        "except BrokenPipeError:\n"
        "    sys.exit(reader_gone())\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    assert writer.stdout.read(10) == b"x" * 10
    writer.stdout.close()  # the reader goes away
    assert writer.wait(timeout=60) == 141
    assert writer.stderr.read() == b""
