"""The hostile sweep's machinery (``benchmarks/hostile_inputs.py``): each outcome is recognised on
a stand-in program, and the generated cases cover every flag. Seconds; no torch."""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hostile():
    spec = importlib.util.spec_from_file_location(
        "hostile_inputs", ROOT / "benchmarks" / "hostile_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_inputs"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["hostile_inputs"]


# A child's peak resident memory includes its parent's at the moment it execs (Linux records the
# old memory's high-water mark in the child's rusage), and pytest's grows as the suite runs:
# "huge" is 100 MiB beyond the parent's peak now, and the huge stand-in allocates 400 MiB more.
def huge_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + 100 * 1024


def sweep(hostile, tmp_path: Path, code: str, huge: int | None = None):
    """A sweep whose program ``nqm`` is ``python -c code``; ``huge`` KiB (default
    :func:`huge_kb`) is a huge allocation."""
    fixtures = tmp_path / "fx"
    fixtures.mkdir()
    programs = {"nqm": [sys.executable, "-c", code]}
    return hostile.Sweep({}, fixtures, tmp_path, programs, dict(os.environ), 5.0, 2.0,
                         huge or huge_kb())  # fmt: skip


STAND_INS = {
    "ok": (0, "print('fine')", (0,)),
    "wrong status": (0, "print('accepted')", (2,)),
    "traceback": (0, "raise ValueError('boom')", (2,)),
    "not one line": (0, "import sys; print('nqm steady: error: a\\nb', file=sys.stderr); sys.exit(2)", (2,)),
    "hang": (0, "import time; time.sleep(60)", (2,)),
    "stray file": (0, "import sys; open('.x.1.abcdefgh.tmp', 'w'); "
                      "print('nqm steady: error: --lr', file=sys.stderr); sys.exit(2)", (2,)),
    "huge allocation": (0, "import time; b = bytearray(HUGE * 1024); time.sleep(0.5)", (2,)),
    "slow refusal": (1, "import sys, time; time.sleep(2.5); "
                        "print('nqm steady: error: --lr', file=sys.stderr); sys.exit(2)", (2,)),
}  # fmt: skip


@pytest.mark.parametrize("outcome", list(STAND_INS))
def test_each_outcome_is_recognised(hostile, tmp_path, outcome):
    number, code, expect = STAND_INS[outcome]
    huge = huge_kb()
    code = code.replace("HUGE", str(huge + 400 * 1024))  # KiB beyond the bound
    case = hostile.Case(outcome, "nqm", ["steady"], expect=expect, number=bool(number), deadline=3)
    result = hostile.run_case(case, sweep(hostile, tmp_path, code, huge))
    assert result["outcome"] == outcome, result


def test_two_copies_that_both_succeed_are_a_silent_mix(hostile, tmp_path):
    case = hostile.Case("two", "nqm", ["fit"], expect=(0, 2), twice=True)
    assert hostile.run_case(case, sweep(hostile, tmp_path, "pass"))["outcome"] == "silent mix"


def test_a_message_must_name_what_it_is_told(hostile, tmp_path):
    code = "import sys; print('nqm steady: error: --alpha got 0.0', file=sys.stderr); sys.exit(2)"
    case = hostile.Case("value", "nqm", ["steady"], must_not=(r"got 0\.0\b",))
    assert hostile.run_case(case, sweep(hostile, tmp_path, code))["outcome"] == "wrong message"


def test_generated_cases_cover_every_flag_once_at_least(hostile):
    flags = {
        "nqm": {
            "steady": [{"flag": "--lr", "kind": "float", "nargs": None},
                       {"flag": "--rule", "kind": "choice", "nargs": None}],
            "verify": [{"flag": "--out", "kind": "text", "nargs": None}],
        },
        "lic-train": {"fit": [{"flag": "--patch-size", "kind": "int", "nargs": 2}]},
    }  # fmt: skip
    cases = hostile.flag_cases(flags)
    tried = {(case.program, case.argv[0], flag) for case in cases for flag in case.argv[1:2]}
    assert tried == {("nqm", "steady", "--lr"), ("nqm", "steady", "--rule"),
                     ("nqm", "verify", "--out"), ("lic-train", "fit", "--patch-size")}  # fmt: skip
    patch = next(case for case in cases if case.program == "lic-train")
    assert patch.argv[1:4] == ["--patch-size", "-1", "-1"] and patch.argv.count("--patch-size") == 1
    assert all(case.expect == (2,) for case in cases if case.argv[2] in ("x", "", "nan"))
