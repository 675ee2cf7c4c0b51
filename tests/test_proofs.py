"""Every proof script in proofs/ runs and certifies all its steps; the certification helpers reject
false steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

PROOFS = Path(__file__).resolve().parents[1] / "proofs"
RESULTS = (
    "sgd",
    "sma_ratio",
    "theorem",
    "lookahead",
    "momentum",
    "counterexamples",
    "embedding",
    "loss",
    "preconditioning",
)

sys.path.insert(0, str(PROOFS))
import certify  # noqa: E402


def test_every_result_has_a_script_and_a_derivation():
    scripts = {p.stem.removeprefix("check_") for p in PROOFS.glob("check_*.py")}
    assert set(RESULTS) <= scripts
    derivations = [p.name for p in PROOFS.glob("[0-9][0-9]-*.md")]
    assert len(derivations) >= len(RESULTS)


@pytest.mark.parametrize("name", RESULTS)
def test_proof_script_certifies_every_step(name):
    done = subprocess.run(
        [sys.executable, str(PROOFS / f"check_{name}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROOFS.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "steps checked" in done.stdout
    assert "FAILED" not in done.stdout + done.stderr


def test_identity_rejects_a_false_identity():
    x = sp.symbols("x")
    with pytest.raises(certify.StepFailed):
        certify.identity("false", (x + 1) ** 2, x**2 + 1)


def test_positive_rejects_an_expression_of_either_sign():
    b, u = sp.symbols("beta u", real=True)
    s, w = sp.symbols("s w", positive=True)
    ratio = (1 - b) * (1 + b * u) / ((1 + b) * (1 - b * u))
    domain = {b: certify.unit_interval(s), u: certify.symmetric_interval(w)}
    certify.positive("1 - R > 0", 1 - ratio, domain)
    with pytest.raises(certify.StepFailed):
        certify.positive("R - 1 > 0 is false", ratio - 1, domain)
    with pytest.raises(certify.StepFailed):
        certify.positive("u has both signs", u, {u: certify.symmetric_interval(w)})


def test_numeric_rejects_a_false_fact():
    with pytest.raises(certify.StepFailed):
        certify.numeric("false", 1 > 2)
