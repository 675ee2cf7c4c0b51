"""nqm.verify: every claim holds on the quick settings, and fails when the theory it checks is
broken (each check can fail)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nqm import closed_form, verify

QUICK = verify.Settings(seed=0, quick=True)


def test_random_domain_covers_the_valid_domain():
    dom = verify.random_domain(np.random.default_rng(0), 30_000)
    rho, beta, alpha, k = dom["rho"], dom["beta"], dom["alpha"], dom["k"]
    assert (rho > 0).all() and (rho < 2).all()
    assert rho.min() < 1e-6 and rho.max() > 2 - 1e-6  # crowds both ends
    assert (beta > 0).all() and (beta < 1).all() and beta.max() > 1 - 1e-6
    assert (alpha > 0).all() and (alpha < 1).all()
    assert k.min() == 1 and k.max() > 500 and np.issubdtype(k.dtype, np.integer)


@pytest.mark.parametrize(
    "claim",
    [
        verify.claim_variance_reduction,
        verify.claim_standard_nqm,
        verify.claim_closed_form_equals_lyapunov,
        verify.claim_bounds_and_limits,
        verify.claim_not_monotone_in_k,
        verify.claim_no_order,
        verify.claim_transient,
        verify.claim_divergence_raises,
        verify.claim_embedding,
    ],
)
def test_each_claim_holds(claim):
    result = claim(QUICK)
    assert result.holds, result.evidence
    assert result.statement and result.evidence


def test_monte_carlo_claim_holds_and_counts_its_estimates():
    curves = verify.standard_curves(QUICK)
    claim = verify.claim_monte_carlo(QUICK, curves)
    assert claim.holds, claim.evidence
    assert claim.details["estimates"] > 1000
    assert 0.7 < claim.details["z_sd"] < 1.3  # standard errors neither too small nor too large


def test_standard_nqm_numbers_match_the_reference_table():
    rows = {(r["lr"], r["rule"]): r for r in verify.claim_standard_nqm(QUICK).details["rows"]}
    # TABLE_D of tests/test_nqm/test_closed_form.py and proofs/check_loss.py (d = 10^4, B = 1).
    assert rows[(0.5, "SMA(k=5, beta=0.9) over SGD(lr=0.5)")]["loss"] == pytest.approx(
        0.760949, rel=2e-6
    )
    assert rows[(1.9, "SMA(k=5, beta=0.99) over SGD(lr=1.9)")]["ratio"] == pytest.approx(
        0.0836, abs=1e-4
    )


def test_monte_carlo_claim_fails_when_the_exact_moments_are_wrong(monkeypatch):
    curves = verify.standard_curves(QUICK)
    biased = [dataclasses.replace(c, variance=c.variance * 1.05) for c in curves.exact]
    claim = verify.claim_monte_carlo(
        QUICK, verify.Curves(curves.problem_label, curves.labels, biased, curves.sampled)
    )
    assert not claim.holds


def test_lyapunov_claim_fails_when_a_closed_form_is_wrong(monkeypatch):
    real = closed_form.sma_ratio
    monkeypatch.setattr(closed_form, "sma_ratio", lambda b, r, k: real(b, r, k) * (1 + 1e-6))
    assert not verify.claim_closed_form_equals_lyapunov(QUICK).holds


def test_reduction_claim_fails_when_r_exceeds_one(monkeypatch):
    monkeypatch.setattr(closed_form, "sma_reduction", lambda b, r, k: np.full(np.shape(r), -1e-3))
    assert not verify.claim_variance_reduction(QUICK).holds


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_divergence_claim_fails_when_a_divergent_query_returns_a_number(monkeypatch):
    monkeypatch.setattr(closed_form, "checked_rho", lambda base, h, **_: base.lr * np.asarray(h))
    claim = verify.claim_divergence_raises(QUICK)
    assert not claim.holds and "returned a value" in claim.evidence


def test_not_monotone_values_are_the_counterexample():
    details = verify.claim_not_monotone_in_k(QUICK).details
    assert details["R"] == pytest.approx([0.12644, 0.78711, 0.15525, 0.18137, 0.47410], abs=1e-5)


def test_same_seed_same_claims():
    a = verify.claim_variance_reduction(QUICK).details
    b = verify.claim_variance_reduction(QUICK).details
    assert a == b
    c = verify.claim_variance_reduction(verify.Settings(seed=1, quick=True)).details
    assert c != a


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 57, 1000, 12345])
@pytest.mark.parametrize("count", [2, 5, 20, 60, 1000, 100_000])
def test_log_steps_is_the_rounded_geometric_grid(steps, count):
    """The grid, rounded, without repeats; where every step is among them (every_step), the steps
    themselves without the grid, and the same answer."""
    grid = np.round(np.geomspace(1, steps, count)).astype(np.int64)
    expected = np.unique(np.concatenate([[0], grid]))
    assert np.array_equal(verify.log_steps(steps, count), expected)
    if verify.every_step(steps, count):
        assert np.array_equal(expected, np.arange(steps + 1))


def test_log_steps_of_a_billion_points_is_every_step_at_once():
    assert np.array_equal(verify.log_steps(1000, 10**9), np.arange(1001))
