"""nqm.scaling: steps to target against a step-by-step scan of the exact moments, the tuner against a
dense grid and the information bound, the binned instance against the notebook's rule, and the
critical batch size."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lic_dynamics.validation import InvalidValue
from nqm import closed_form as cf
from nqm import scaling
from nqm.moments import loss_curve
from nqm.problem import Problem
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak

from .strategies import alphas, betas, ks, mus

LONG = settings(max_examples=min(settings.default.max_examples, 60))


@st.composite
def problems(draw):
    """A small NQM: 1-6 curvatures in [1e-2, 1], per-example noise, batch, x_0 ~ N(mean0, 1)."""
    d = draw(st.integers(1, 6))
    h = np.array(draw(st.lists(st.floats(1e-2, 1.0), min_size=d, max_size=d)))
    c = np.array(draw(st.lists(st.floats(0.0, 2.0), min_size=d, max_size=d)))
    batch = draw(st.sampled_from([1, 4, 64, 1024]))
    mean0 = draw(st.sampled_from([0.0, 1.0]))
    return Problem(h=h, c=c, batch=batch, mean0=mean0)


@st.composite
def rules(draw, h: np.ndarray, momentum: bool = True):
    """A stable rule over SGD (or momentum) with rho = lr P h up to 1.9 and p in [0, 1]."""
    p = draw(st.sampled_from([0.0, 0.5, 1.0]))
    rho = draw(st.floats(0.02, 1.9))
    lr = rho / float(np.max(h ** (1 - p)))
    use_momentum = momentum and draw(st.booleans())
    base = (
        Momentum(lr, draw(mus(0.0, 0.9)), precondition=p)
        if use_momentum
        else SGD(lr, precondition=p)
    )
    kind = draw(st.sampled_from(["base", "sma", "ema", "lookahead"]))
    k, beta, alpha = draw(ks(8)), draw(betas(0.0, 0.95)), draw(alphas(0.1, 1.0))
    return {"base": base, "sma": SMA(base, k, beta), "ema": EMA(base, beta),
            "lookahead": Lookahead(base, k, alpha)}[kind]  # fmt: skip


def scan(problem, rule, horizon):
    """Exact expected loss of the readout at steps 0..horizon, step by step."""
    return loss_curve(problem, rule, horizon).loss


@LONG
@given(st.data())
def test_steps_to_target_is_a_crossing_and_the_first_where_the_loss_decreases(data):
    problem = data.draw(problems())
    rule = data.draw(rules(problem.h))
    crossing = scaling.Ladder(rule, problem)
    steady = crossing.steady_loss(problem.sigma2)
    start = scan(problem, rule, 0)[0]
    assume(steady < start * 0.9)
    target = data.draw(st.floats(steady + 0.05 * (start - steady), start * 0.99))
    found = scaling.steps_to_target(problem, rule, target)
    assume(found.steps is not None and found.steps <= 3000)
    loss = scan(problem, rule, found.steps)
    k = rule.period
    assert found.steps % k == 0
    assert loss[found.steps] <= target * (1 + 1e-12)
    assert loss[found.steps - k] > target * (1 - 1e-12)  # the readout is constant in between
    assert found.steps - k < found.fractional <= found.steps
    first = int(np.argmax(loss <= target * (1 + 1e-12)))
    decreasing = np.all(np.diff(loss[: found.steps + 1]) <= 1e-12 * loss[0])
    if decreasing:  # then there is one crossing and it is the first
        assert first == found.steps
    assert found.steady_loss == pytest.approx(steady, rel=1e-12)


@LONG
@given(st.data())
def test_sgd_finds_the_first_crossing_when_every_coordinate_starts_above_its_steady_state(data):
    """SGD (any preconditioner): E[x_t^2] = V* + r^(2t) (E[x_0^2] - V*) per coordinate, monotone;
    if every coordinate starts at or above its steady level the loss is non-increasing, so the
    crossing binary lifting finds is the first (checked against the scan)."""
    problem = data.draw(problems())
    p = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    lr = data.draw(st.floats(0.02, 1.95)) / float(np.max(problem.h ** (1 - p)))
    rule = SGD(lr, precondition=p)
    steady = cf.steady_variance(rule, problem.h, problem.sigma2)
    assume(np.all(problem.var0 + problem.mean0**2 >= steady))
    start = scan(problem, rule, 0)[0]
    limit = scaling.Ladder(rule, problem).steady_loss(problem.sigma2)
    assume(limit < 0.9 * start)
    target = data.draw(st.floats(limit + 0.05 * (start - limit), 0.99 * start))
    found = scaling.steps_to_target(problem, rule, target)
    assume(found.steps <= 3000)
    loss = scan(problem, rule, found.steps)
    assert np.all(np.diff(loss) <= 1e-12 * loss[0])
    assert int(np.argmax(loss <= target * (1 + 1e-12))) == found.steps


def test_a_crossing_under_oscillation_may_be_a_later_one():
    """Heavy ball at a large learning rate: the loss oscillates around the target, and binary
    lifting returns a crossing, not the first (the limitation the module states)."""
    problem = Problem(h=1.0 / np.arange(1, 10_001), c=0.0)
    rule = Momentum(2.6, 0.97)
    found = scaling.steps_to_target(problem, rule, 0.01)
    loss = scan(problem, rule, found.steps)
    assert loss[found.steps] <= 0.01 < loss[found.steps - 1]
    assert int(np.argmax(loss <= 0.01)) < found.steps  # an earlier dip below the target


def test_unreachable_targets_say_why():
    problem = Problem(h=[1.0, 0.1], c=1.0, batch=1)
    steady = scaling.Ladder(SGD(0.5), problem).steady_loss(problem.sigma2)
    at = scaling.steps_to_target(problem, SGD(0.5), steady)  # exactly the limit: never below it
    assert at.steps is None and "steady-state loss" in at.reason
    assert scaling.steps_to_target(problem, SGD(0.5), 1.01 * steady).steps is not None
    diverging = scaling.steps_to_target(problem, SGD(2.5), 0.5)
    assert diverging.steps is None and diverging.steady_loss == math.inf
    assert scaling.steps_to_target(problem, SGD(0.5), 100.0).steps == 0  # already below
    with pytest.raises(ValueError, match="Polyak"):
        scaling.steps_to_target(problem, Polyak(SGD(0.5)), 0.5)
    with pytest.raises(InvalidValue, match=r"^target "):
        scaling.steps_to_target(problem, SGD(0.5), 0.0)


def test_one_ladder_serves_every_batch_size():
    problem = Problem(h=1.0 / np.arange(1, 201), c=1.0 / np.arange(1, 201))
    rule = SMA(SGD(0.5), k=4, beta=0.9)
    ladder = scaling.Ladder(rule, problem)
    for batch in (1, 16, 1024):
        shared = ladder.crossing(problem.c / batch, 0.05)
        fresh = scaling.steps_to_target(Problem(problem.h, problem.c, batch=batch), rule, 0.05)
        assert shared == fresh


# ---- the tuner ------------------------------------------------------------------------------------

SMALL = scaling.exact(200)


@pytest.mark.parametrize("name", ["sgd", "precond-sgd", "ema", "sma", "lookahead"])
def test_tuned_steps_beat_a_dense_grid_of_learning_rates(name):
    family = scaling.FAMILIES[name]
    point = family.grid[len(family.grid) // 2]
    problem = SMALL.problem(1)
    batches = [4, 256, None]
    single = dataclasses.replace(family, grid=(point,))
    tuned = scaling.tune(SMALL, single, batches, 0.05)
    limit = family.lr_limit(SMALL.h, 0.5, point)
    for t, batch in zip(tuned, batches, strict=True):
        sigma2 = SMALL.c / batch if batch else np.zeros_like(SMALL.h)
        dense = []
        for lr in limit * np.logspace(-6, -0.001, 160):
            ladder = scaling.Ladder(family.rule(lr, 0.5, point), problem, SMALL.weight)
            steps = ladder.crossing(sigma2, 0.05).steps
            dense.append(math.inf if steps is None else steps)
        assert t.steps is not None and t.steps <= min(dense), (name, batch, t.steps, min(dense))


def test_tuned_steps_never_beat_the_information_bound_and_fall_with_the_batch():
    study = scaling.study(batches=[4, 32, 256, 2048], dim=300, target=0.05)
    bound = scaling.examples_needed(scaling.exact(300), 0.05)
    for name, column in study.tuned.items():
        steps = [t.steps for t in column]
        assert all(s is not None for s in steps), name
        assert steps == sorted(steps, reverse=True), (name, steps)  # non-increasing in B
        for t in column[:-1]:
            assert t.steps * t.batch >= bound, (name, t)


def test_workers_do_not_change_the_result():
    args = dict(rules=["sgd", "lookahead"], batches=[8, 512], dim=150, target=0.05)
    one, two = scaling.study(**args, workers=1), scaling.study(**args, workers=2)
    assert one.records() == two.records()


def test_records_carry_what_the_command_line_promises():
    records = scaling.study(["momentum"], batches=[16], dim=100, target=0.1).records()
    assert [r["batch"] for r in records] == [16, None]
    for r in records:
        assert {"rule", "batch", "steps", "lr", "mu", "critical_batch", "min_steps"} <= set(r)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"rules": ["adam"]}, "rules"),
        ({"rules": ["sgd", "sgd"]}, "rules"),
        ({"rules": []}, "rules"),
        ({"batches": [4, 4]}, "batch"),
        ({"batches": [0]}, "batch"),
        ({"target": -1.0}, "target"),
        ({"target": float("inf")}, "target"),
        ({"precondition": 2.0}, "precondition"),
        ({"dim": 0}, "dim"),
        ({"bins": 1}, "bins"),
        ({"dim": 10, "bins": 11}, "bins"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_study_arguments_name_the_parameter(kwargs, parameter):
    args = dict(rules=["sgd"], batches=[4], target=0.1, precondition=0.5, dim=10, bins=None,
                workers=1)  # fmt: skip
    args.update(kwargs)
    with pytest.raises(InvalidValue) as raised:
        scaling.check_study(**args)
    assert raised.value.parameter == parameter


# ---- the binned approximation and the critical batch ----------------------------------------------


@given(st.integers(2, 3000), st.integers(2, 200))
def test_binned_follows_the_notebooks_rule(dim, bins):
    assume(bins <= dim)
    instance = scaling.binned(dim, bins)
    values = np.geomspace(1.0, 1.0 / dim, bins)
    h = 1.0 / np.arange(1, dim + 1)
    # each h_i is counted at the largest bin value not above it
    expected = np.zeros(bins)
    for value in h:
        expected[np.flatnonzero(values <= value)[0]] += 1
    keep = expected > 0
    np.testing.assert_array_equal(instance.counts, expected[keep])
    np.testing.assert_array_equal(instance.h, values[keep])
    np.testing.assert_array_equal(instance.c, instance.h)


def test_binned_is_close_to_exact_but_not_equal():
    exact = scaling.tune(scaling.exact(), scaling.FAMILIES["sgd"], [64, 4096], 0.01)
    binned = scaling.tune(scaling.binned(), scaling.FAMILIES["sgd"], [64, 4096], 0.01)
    for e, b in zip(exact, binned, strict=True):
        assert e.steps != b.steps and abs(b.steps / e.steps - 1) < 0.5


def test_critical_batch_below_and_unknown():
    rows = [scaling.Tuned("sgd", 4, 150, 0.1), scaling.Tuned("sgd", 8, 120, 0.1),
            scaling.Tuned("sgd", None, 100, 0.1)]  # fmt: skip
    assert scaling.critical_batch(rows) == scaling.CriticalBatch(4, 100, "below")
    assert scaling.critical_batch(rows[:2]).where.startswith("unknown")
    unreachable = [scaling.Tuned("sgd", 4, None, None), *rows[1:]]
    # unreachable at B = 4: the crossing lies in (4, 8], reported at 8
    assert scaling.critical_batch(unreachable) == scaling.CriticalBatch(8, 100, "inside")


def _records(steps: dict[str, tuple[int, int, int]]) -> list[dict]:
    """Records of a sweep over B = 4 and 1024 and no noise: rule -> steps at each."""
    out = []
    for rule, column in steps.items():
        tuned = [
            scaling.Tuned(rule, b, s, 0.1) for b, s in zip((4, 1024, None), column, strict=True)
        ]
        crit = scaling.critical_batch(tuned)
        out += [{**t.record(), "critical_batch": crit.batch, "critical_where": crit.where,
                 "min_steps": crit.min_steps} for t in tuned]  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("ema", "holds"),
    [
        ((2000, 101, 100), True),  # 5x fewer steps at B = 4, none saved at 1024: Zhang et al.'s
        ((2000, 60, 59), False),  # 5x at B = 4, but 1.67x at 1024: more than a tenth of the saving
        ((10_000, 50, 50), False),  # no saving at B = 4, only at 1024
        ((20_000, 200, 199), False),  # slower everywhere: a smaller loss at 1024 is no saving at 4
    ],
)
def test_the_ema_finding_is_zhang_et_als_small_batch_saving(ema, holds):
    records = _records({"sgd": (10_000, 100, 100), "ema": ema})
    (claim,) = [c for c in scaling.findings(records) if c.key.startswith("ema-")]
    assert claim.key == "ema-helps-mainly-at-small-batch"
    assert claim.holds is holds
    assert claim.statement.startswith("EMA saves steps mainly at small batch (Zhang et al.)")
