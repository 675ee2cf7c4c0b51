"""nqm.problem: validation, the standard instance, sigma2 = c/B, read-only state, expected loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nqm.problem import Problem, standard

from .strategies import batches

positive_arrays = hnp.arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(1e-6, 1e6),
)


# ---- standard instance -----------------------------------------------------------------------


def test_standard_default_is_zhang_et_al_instance():
    p = standard()
    i = np.arange(1, 10_001)
    assert p.dim == 10_000
    np.testing.assert_array_equal(p.h, 1.0 / i)
    np.testing.assert_array_equal(p.c, p.h)
    assert p.batch == 1
    np.testing.assert_array_equal(p.mean0, np.zeros(10_000))
    np.testing.assert_array_equal(p.var0, np.ones(10_000))
    # condition number d
    assert p.h.max() / p.h.min() == pytest.approx(10_000, rel=1e-12)


def test_standard_arguments_are_passed_through():
    p = standard(dim=7, batch=4, mean0=3.0, var0=0.25)
    assert p.dim == 7
    np.testing.assert_array_equal(p.h, [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6, 1 / 7])
    np.testing.assert_array_equal(p.sigma2, p.h / 4)
    np.testing.assert_array_equal(p.mean0, np.full(7, 3.0))
    np.testing.assert_array_equal(p.var0, np.full(7, 0.25))


@pytest.mark.parametrize("dim", [0, -1, 2.5, True])
def test_standard_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        standard(dim=dim)


# ---- sigma2 and broadcasting -------------------------------------------------------------------


@given(h=positive_arrays, data=st.data(), batch=batches)
def test_sigma2_is_c_over_batch(h, data, batch):
    c = data.draw(hnp.arrays(np.float64, h.shape, elements=st.floats(0.0, 1e6)))
    p = Problem(h=h, c=c, batch=batch)
    assert p.sigma2.shape == h.shape
    np.testing.assert_array_equal(p.sigma2, c / batch)
    np.testing.assert_array_equal(p.c, c)


def test_scalars_broadcast_to_dim():
    p = Problem(h=[1.0, 2.0, 3.0], c=0.5, mean0=2.0, var0=0.0, batch=2)
    assert p.dim == 3
    for name, want in (("c", 0.5), ("mean0", 2.0), ("var0", 0.0)):
        arr = getattr(p, name)
        assert arr.shape == (3,) and arr.dtype == np.float64
        np.testing.assert_array_equal(arr, np.full(3, want))
    np.testing.assert_array_equal(p.sigma2, np.full(3, 0.25))


def test_scalar_h_is_one_coordinate():
    p = Problem(h=2.0, c=1.0)
    assert p.dim == 1 and p.h.shape == (1,)


def test_integral_float_batch_is_accepted_as_int():
    p = Problem(h=[1.0], c=1.0, batch=4.0)
    assert p.batch == 4 and isinstance(p.batch, int)


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"h": [[1.0, 2.0]], "c": 1.0}, "h"),
        ({"h": [], "c": 1.0}, "h"),
        ({"h": [1.0, 0.0], "c": 1.0}, r"h\[1\]"),
        ({"h": [1.0, -2.0], "c": 1.0}, r"h\[1\]"),
        ({"h": [1.0, np.nan], "c": 1.0}, r"h\[1\]"),
        ({"h": [np.inf], "c": 1.0}, "h"),
        ({"h": -1.0, "c": 1.0}, "h"),
        ({"h": [1.0, 2.0], "c": [1.0, -1.0]}, r"c\[1\]"),
        ({"h": [1.0, 2.0], "c": [np.nan, 1.0]}, r"c\[0\]"),
        ({"h": [1.0, 2.0], "c": -0.5}, "c"),
        ({"h": [1.0, 2.0], "c": [1.0, 2.0, 3.0]}, "c"),
        ({"h": [1.0, 2.0], "c": [[1.0, 2.0]]}, "c"),
        ({"h": [1.0, 2.0], "c": 1.0, "mean0": np.nan}, "mean0"),
        ({"h": [1.0, 2.0], "c": 1.0, "mean0": [1.0, np.inf]}, "mean0"),
        ({"h": [1.0, 2.0], "c": 1.0, "mean0": [1.0, 2.0, 3.0]}, "mean0"),
        ({"h": [1.0, 2.0], "c": 1.0, "var0": -1.0}, "var0"),
        ({"h": [1.0, 2.0], "c": 1.0, "var0": [1.0, np.nan]}, r"var0\[1\]"),
        ({"h": [1.0, 2.0], "c": 1.0, "var0": [1.0, 1.0, 1.0]}, "var0"),
        ({"h": [1.0], "c": 1.0, "batch": 0}, "batch"),
        ({"h": [1.0], "c": 1.0, "batch": -4}, "batch"),
        ({"h": [1.0], "c": 1.0, "batch": 2.5}, "batch"),
        ({"h": [1.0], "c": 1.0, "batch": True}, "batch"),
        ({"h": [1.0], "c": 1.0, "batch": "4"}, "batch"),
    ],
)
def test_invalid_problem_raises_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Problem(**kwargs)


def test_shape_mismatch_message_names_the_shapes():
    with pytest.raises(ValueError, match=r"c must be a scalar or have shape \(2,\)"):
        Problem(h=[1.0, 2.0], c=[1.0, 2.0, 3.0])


def test_zero_noise_and_zero_initial_variance_are_valid():
    p = Problem(h=[1.0, 2.0], c=0.0, var0=0.0)
    np.testing.assert_array_equal(p.sigma2, [0.0, 0.0])
    np.testing.assert_array_equal(p.var0, [0.0, 0.0])


# ---- immutability --------------------------------------------------------------------------------


def _full_problem() -> Problem:
    return Problem(
        h=np.array([1.0, 2.0, 3.0]),
        c=np.array([0.5, 0.5, 1.0]),
        batch=2,
        mean0=np.array([1.0, -1.0, 0.0]),
        var0=np.array([1.0, 0.0, 2.0]),
    )


@pytest.mark.parametrize("name", ["h", "c", "mean0", "var0"])
def test_arrays_are_read_only(name):
    p = _full_problem()
    arr = getattr(p, name)
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0] = 42.0


def test_problem_is_frozen():
    p = _full_problem()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.h = np.ones(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.batch = 3


@pytest.mark.parametrize("name", ["c", "mean0", "var0"])
def test_problem_does_not_alias_caller_arrays(name):
    """A Problem owns its arrays: writing to the caller's array later does not change it, and the
    caller's array stays writeable."""
    kwargs = {"h": np.array([1.0, 2.0, 3.0]), "c": 1.0}
    mine = np.array([0.5, 0.25, 2.0])
    kwargs[name] = mine
    p = Problem(**kwargs)
    assert mine.flags.writeable
    mine[0] = 99.0
    assert getattr(p, name)[0] == 0.5


def test_problem_does_not_alias_caller_h():
    """Regression: a float64 1-D h used to be kept without a copy (frozen caller array, and later
    writes through a view showed up in Problem.h)."""
    base = np.array([1.0, 2.0, 3.0, 4.0])
    mine = base[:3]
    p = Problem(h=mine, c=1.0)
    assert mine.flags.writeable, "Problem() made the caller's h read-only"
    base[0] = 99.0
    assert p.h[0] == 1.0, "Problem.h changed when the caller wrote to its own array"


# ---- expected loss ------------------------------------------------------------------------------


@given(h=positive_arrays, data=st.data())
def test_expected_loss_is_half_h_weighted_moments(h, data):
    d = h.size
    mean = data.draw(hnp.arrays(np.float64, (3, d), elements=st.floats(-1e3, 1e3)))
    var = data.draw(hnp.arrays(np.float64, (3, d), elements=st.floats(0.0, 1e3)))
    p = Problem(h=h, c=1.0)
    bias, variance = p.expected_loss(mean, var)
    assert bias.shape == variance.shape == (3,)
    for t in range(3):
        want_bias = 0.5 * sum(float(h[i]) * float(mean[t, i]) ** 2 for i in range(d))
        want_var = 0.5 * sum(float(h[i]) * float(var[t, i]) for i in range(d))
        assert bias[t] == pytest.approx(want_bias, rel=1e-12, abs=1e-300)
        assert variance[t] == pytest.approx(want_var, rel=1e-12, abs=1e-300)


def test_expected_loss_single_state():
    p = Problem(h=[2.0, 4.0], c=1.0)
    bias, variance = p.expected_loss(np.array([1.0, 3.0]), np.array([0.5, 0.25]))
    assert bias == pytest.approx(0.5 * (2 * 1 + 4 * 9))
    assert variance == pytest.approx(0.5 * (2 * 0.5 + 4 * 0.25))
