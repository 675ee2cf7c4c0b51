"""Modes (CMD): balanced sampling, clustering of planted modes, least squares and the exact streaming
update."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from lic_train.rules.modes import Modes, abs_correlation, balanced_sample  # noqa: E402


def planted_trajectories(
    sizes: list[int], groups: int, steps: int, seed: int, noise: float = 1e-3
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per step, the tracked tensors (as float64 arrays) of N scalars that follow
    ``a_i * z_g(i)(t) + b_i + noise``, with independent random walks z_g; also g, a, b."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    group = rng.integers(0, groups, size=n)
    group[:groups] = np.arange(groups)  # every group present
    a = rng.uniform(0.5, 2.0, size=n) * rng.choice([-1.0, 1.0], size=n)
    b = rng.normal(size=n)
    z = np.cumsum(rng.normal(size=(steps, groups)), axis=0)
    flat = a * z[:, group] + b + noise * rng.normal(size=(steps, n))
    splits = np.cumsum(sizes)[:-1]
    return [np.split(row, splits) for row in flat], group, a, b


def observe_all(modes: Modes, history: list[list[np.ndarray]]) -> None:
    for tensors in history:
        modes.observe([torch.from_numpy(t) for t in tensors])


def same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two labelings induce the same partition."""
    pairs = set(zip(x.tolist(), y.tolist(), strict=True))
    return len(pairs) == len(set(x.tolist())) == len(set(y.tolist()))


@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=12),
    count=st.integers(1, 600),
    seed=st.integers(0, 2**32 - 1),
)
def test_balanced_sample_is_distinct_complete_and_reaches_every_tensor(sizes, count, seed):
    picked = balanced_sample(sizes, count, np.random.default_rng(seed))
    total = sum(sizes)
    assert picked.size == min(count, total)
    assert np.all(np.diff(picked) > 0)  # sorted and distinct
    assert picked.min() >= 0 and picked.max() < total
    owner = np.searchsorted(np.cumsum(sizes), picked, side="right")
    if count // (2 * len(sizes)) >= 1:  # the even half gives every tensor at least one
        assert set(owner.tolist()) == set(range(len(sizes)))


def test_balanced_sample_is_half_even_half_proportional():
    sizes = [10_000, 100, 100, 100]
    picked = balanced_sample(sizes, 400, np.random.default_rng(0))
    owner = np.searchsorted(np.cumsum(sizes), picked, side="right")
    counts = np.bincount(owner, minlength=4)
    # even: 50 each; proportional: floor(size * 200 / 10300) = 194, 1, 1, 1; shortfall to the largest
    assert counts.tolist() == [247, 51, 51, 51]


@given(seed=st.integers(0, 2**32 - 1), t=st.integers(3, 30))
def test_abs_correlation_equals_numpy(seed, t):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, t))
    y = rng.normal(size=(3, t))
    x[1] = 7.0  # a constant row correlates 0 with everything
    got = abs_correlation(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.abs(np.corrcoef(x, y)[:5, 5:])
    want[1] = 0.0
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_planted_modes_are_found_and_lines_are_least_squares():
    sizes = [300, 40, 7, 153]
    history, group, a_true, _ = planted_trajectories(sizes, groups=4, steps=12, seed=3)
    modes = Modes(sizes, snapshots=12, modes=4, samples=200, snapshot_dtype=torch.float64)
    observe_all(modes, history)
    assert modes.fitted
    assert same_partition(modes.mode.numpy(), group)
    reference = modes.reference.numpy()
    assert sorted(group[reference].tolist()) == [0, 1, 2, 3]  # one reference per planted group
    a, b = (v.numpy() for v in modes.coefficients())
    w = np.array([np.concatenate(tensors) for tensors in history])  # (T, N)
    for i in range(w.shape[1]):
        r = w[:, reference[modes.mode[i]]]
        design = np.stack([r, np.ones_like(r)], axis=1)
        (want_a, want_b), *_ = np.linalg.lstsq(design, w[:, i], rcond=None)
        assert a[i] == pytest.approx(want_a, rel=1e-9, abs=1e-10)
        assert b[i] == pytest.approx(want_b, rel=1e-9, abs=1e-10)
    # The fitted slope recovers the planted ratio a_i / a_ref.
    np.testing.assert_allclose(a, a_true / a_true[reference[modes.mode]], rtol=1e-2)
    np.testing.assert_array_equal(a[reference], 1.0)
    np.testing.assert_array_equal(b[reference], 0.0)


@given(seed=st.integers(0, 2**32 - 1), extra=st.integers(1, 40))
def test_streaming_update_equals_refit_from_scratch(seed, extra):
    sizes = [50, 30]
    history, *_ = planted_trajectories(sizes, groups=3, steps=8 + extra, seed=seed, noise=0.3)
    modes = Modes(
        sizes, snapshots=8, modes=3, samples=80, seed=seed % 1000, snapshot_dtype=torch.float64
    )
    observe_all(modes, history)
    assert modes.count == 8 + extra
    a, b = (v.numpy() for v in modes.coefficients())
    r2 = modes.r_squared().numpy()
    w = np.array([np.concatenate(tensors) for tensors in history])
    r = w[:, modes.reference.numpy()][:, modes.mode.numpy()]  # each scalar's reference, (T, N)
    wc, rc = w - w.mean(axis=0), r - r.mean(axis=0)
    want_a = (wc * rc).sum(axis=0) / (rc * rc).sum(axis=0)
    want_b = w.mean(axis=0) - want_a * r.mean(axis=0)
    scale = np.abs(w).max()
    np.testing.assert_allclose(a, want_a, rtol=0, atol=1e-10 * max(1.0, np.abs(want_a).max()))
    np.testing.assert_allclose(b, want_b, rtol=0, atol=1e-10 * scale)
    want_r2 = (wc * rc).sum(0) ** 2 / ((wc * wc).sum(0) * (rc * rc).sum(0))
    np.testing.assert_allclose(r2, want_r2, atol=1e-10)


def test_streaming_survives_a_large_offset_in_float64():
    """Weights of size 1e3 drifting by 1e-4: raw sums would cancel; the shifted sums do not."""
    sizes = [64]
    history, *_ = planted_trajectories(sizes, groups=2, steps=40, seed=1, noise=1e-3)
    shifted = [[1e3 + 1e-4 * t for t in tensors] for tensors in history]
    modes = Modes(sizes, snapshots=10, modes=2, samples=64, snapshot_dtype=torch.float64)
    observe_all(modes, shifted)
    a, _ = modes.coefficients()
    w = np.array([np.concatenate(t) for t in shifted])
    r = w[:, modes.reference.numpy()][:, modes.mode.numpy()]
    wc, rc = w - w.mean(0), r - r.mean(0)
    np.testing.assert_allclose(a.numpy(), (wc * rc).sum(0) / (rc * rc).sum(0), rtol=1e-7)


def test_constant_scalars_and_constant_references():
    sizes = [6]
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=12))
    history = []
    for t in range(12):
        values = np.array([walk[t], 2 * walk[t] + 1, 5.0, 5.0, -walk[t], 3.0])
        history.append([values])
    modes = Modes(sizes, snapshots=12, modes=2, samples=6, snapshot_dtype=torch.float64)
    observe_all(modes, history)
    a, b = modes.coefficients()
    r2 = modes.r_squared()
    for i in (2, 3, 5):  # constant: a = 0, b = the value, a perfect fit
        assert a[i] == 0.0
        assert b[i] == pytest.approx(history[0][0][i], abs=1e-12)
        assert r2[i] == 1.0
    varying = [0, 1, 4]
    assert len({int(modes.mode[i]) for i in varying}) == 1  # one mode for the correlated walk
    np.testing.assert_allclose(r2[varying].numpy(), 1.0, atol=1e-12)


def test_at_most_as_many_modes_as_sampled_scalars():
    sizes = [40]
    history, *_ = planted_trajectories(sizes, groups=2, steps=10, seed=5)
    modes = Modes(sizes, snapshots=10, modes=6, samples=3, snapshot_dtype=torch.float64)
    observe_all(modes, history)
    assert 1 <= modes.reference.numel() <= 3
    assert modes.mode.max() < modes.reference.numel()


def test_state_dict_round_trip_during_warm_up_and_after_the_fit():
    sizes = [30, 20]
    history, *_ = planted_trajectories(sizes, groups=3, steps=20, seed=9, noise=0.2)
    for split in (4, 15):  # before and after the fit at 8
        whole = Modes(sizes, snapshots=8, modes=3, samples=50)
        observe_all(whole, history)
        first = Modes(sizes, snapshots=8, modes=3, samples=50)
        observe_all(first, history[:split])
        second = Modes(sizes, snapshots=8, modes=3, samples=50)
        second.load_state_dict(first.state_dict())
        observe_all(second, history[split:])
        for x, y in zip(whole.coefficients(), second.coefficients(), strict=True):
            assert torch.equal(x, y)
        assert torch.equal(whole.mode, second.mode)


def test_state_dict_refuses_another_configuration():
    state = Modes([10], snapshots=5, modes=2, samples=10).state_dict()
    with pytest.raises(ValueError, match="modes"):
        Modes([10], snapshots=5, modes=3, samples=10).load_state_dict(state)


def test_memory_after_the_fit_does_not_grow():
    sizes = [500]
    history, *_ = planted_trajectories(sizes, groups=2, steps=60, seed=2)
    modes = Modes(sizes, snapshots=10, modes=2, samples=100)
    observe_all(modes, history[:9])
    during = modes.nbytes()
    assert during >= 9 * 500 * 4  # the float32 history
    observe_all(modes, history[9:20])
    after = modes.nbytes()
    observe_all(modes, history[20:])
    assert modes.nbytes() == after  # O(N), independent of the number of observations
    assert after == 500 * (4 * 8 + 4) + modes.reference.numel() * (6 * 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"snapshots": 2}, "snapshots must be an integer in \\[3"),
        ({"modes": 0}, "modes must be an integer in \\[1"),
        ({"samples": 1}, "samples must be an integer in \\[2"),
        ({"seed": -1}, "seed must be an integer in \\[0"),
    ],
)
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Modes([10], **kwargs)


def test_bad_observations_are_named():
    with pytest.raises(ValueError, match="sizes"):
        Modes([])
    modes = Modes([4, 3], snapshots=3)
    with pytest.raises(ValueError, match="expects 2 tensors, got 1"):
        modes.observe([torch.zeros(4)])
    with pytest.raises(ValueError, match="tensor 1 has 2 scalars, expected 3"):
        modes.observe([torch.zeros(4), torch.zeros(2)])
    with pytest.raises(RuntimeError, match="fitted after 3 observations"):
        modes.coefficients()
