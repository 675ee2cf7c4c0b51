"""lic_train.testing: the torch noisy quadratic model (loss, gradient, noise, validation), and the
trainer's SMA run with torch.optim.SGD on it against nqm's closed-form steady-state variances."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lic_train.rules import SMA  # noqa: E402
from lic_train.testing import NoisyQuadratic  # noqa: E402
from nqm import closed_form, rules  # noqa: E402

Z = 4.5  # |z| bound; P(|z| > 4.5) = 7e-6 per check, Bonferroni-safe over every check here


def _noise(model: NoisyQuadratic, draws: int, seed: int) -> torch.Tensor:
    """``draws`` independent noise vectors, (draws, d), read from ``x.grad`` at the center."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(draws, model.x.numel(), dtype=torch.float64)
    for i in range(draws):
        model.x.grad = torch.zeros_like(model.x)
        model.add_noise(gen)
        out[i] = model.x.grad
    return out


# ---- the module --------------------------------------------------------------------------------


def test_loss_and_gradient():
    gen = torch.Generator().manual_seed(0)
    d = 7
    h = torch.rand(d, dtype=torch.float64, generator=gen) + 0.1
    c = torch.rand(d, dtype=torch.float64, generator=gen)
    center = torch.randn(d, dtype=torch.float64, generator=gen)
    x0 = torch.randn(d, dtype=torch.float64, generator=gen)
    model = NoisyQuadratic(h, c, 3, center=center, x0=x0)
    assert model.x.dtype == torch.float64 and torch.equal(model.x.detach(), x0)
    assert model.x.data_ptr() != x0.data_ptr()  # a copy: training does not write into x0
    loss = model()
    assert loss.shape == ()
    expected = 0.5 * math.fsum((h * (x0 - center) ** 2).tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-14)
    loss.backward()
    torch.testing.assert_close(model.x.grad, h * (x0 - center), rtol=1e-15, atol=0)


def test_starts_at_the_center_with_zero_loss_and_gradient():
    center = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    model = NoisyQuadratic([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], center=center)
    assert torch.equal(model.x.detach(), center)
    loss = model()
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(model.x.grad, torch.zeros(3, dtype=torch.float64))
    assert [n for n, _ in model.named_parameters()] == ["x"]  # h, c, ... are buffers


def test_noise_has_mean_zero_and_variance_c_over_batch():
    c = torch.tensor([0.5, 1.0, 2.0, 8.0, 0.0], dtype=torch.float64)
    batch = 4
    model = NoisyQuadratic(torch.ones(5), c, batch)
    draws = 20000
    noise = _noise(model, draws, seed=1)
    assert torch.equal(noise[:, 4], torch.zeros(draws, dtype=torch.float64))  # c = 0: no noise
    v = (c[:4] / batch).numpy()
    mean = noise[:, :4].mean(0).numpy()
    second = (noise[:, :4] ** 2).mean(0).numpy()
    assert np.abs(mean / np.sqrt(v / draws)).max() < Z
    assert np.abs((second - v) / (v * np.sqrt(2 / draws))).max() < Z
    # Independent coordinates: every sample correlation is O(1/sqrt(draws)).
    corr = np.corrcoef(noise[:, :4].numpy().T)
    assert np.abs(corr[np.triu_indices(4, 1)]).max() * math.sqrt(draws) < Z


def test_noise_is_reproducible_from_the_generator_and_leaves_x_alone():
    model = NoisyQuadratic(torch.ones(4), torch.ones(4), x0=torch.full((4,), 2.0))
    a, b = _noise(model, 3, seed=5), _noise(model, 3, seed=5)
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert torch.equal(model.x.detach(), torch.full((4,), 2.0, dtype=torch.float64))


def test_noise_adds_to_the_gradient():
    model = NoisyQuadratic(torch.ones(3), torch.ones(3), x0=torch.tensor([1.0, 2.0, 3.0]))
    model().backward()
    gen = torch.Generator().manual_seed(2)
    model.add_noise(gen)
    pure = _noise(NoisyQuadratic(torch.ones(3), torch.ones(3)), 1, seed=2)[0]
    torch.testing.assert_close(model.x.grad, torch.tensor([1.0, 2.0, 3.0]).double() + pure)


def test_groups_share_one_scaled_standard_normal():
    group = torch.tensor([0, 0, 0, 3, 3, 1])  # group 2 is empty: indices need not be contiguous
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    c = torch.tensor([1.0, 4.0, 0.25, 2.0, 9.0, 1.0], dtype=torch.float64)
    batch = 2
    model = NoisyQuadratic(torch.ones(6), c, batch, group=group, sign=sign)
    draws = 20000
    noise = _noise(model, draws, seed=3)
    xi = noise / (sign * (c / batch).sqrt())  # the group's standard normal, per coordinate
    torch.testing.assert_close(xi[:, 1], xi[:, 0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(xi[:, 2], xi[:, 0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(xi[:, 4], xi[:, 3], rtol=1e-14, atol=1e-14)
    assert (noise[:, 0] * noise[:, 1] <= 0).all()  # opposite signs share the draw with a flip
    per_group = xi[:, [0, 3, 5]].numpy()
    assert np.abs(per_group.mean(0) * math.sqrt(draws)).max() < Z
    assert np.abs(((per_group**2).mean(0) - 1) / math.sqrt(2 / draws)).max() < Z  # standard
    corr = np.corrcoef(per_group.T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() * math.sqrt(draws) < Z  # independent


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([1.0, 0.0], [1.0, 1.0]), {}, "h must be finite and > 0"),
        (([1.0, -1.0], [1.0, 1.0]), {}, "h must be finite and > 0"),
        (([1.0, float("nan")], [1.0, 1.0]), {}, "h must be finite and > 0"),
        (([1.0, 1.0], [1.0, -0.5]), {}, "c must be finite and >= 0"),
        (([1.0, 1.0], [1.0, 1.0, 1.0]), {}, "h and c must be 1-D of one length"),
        (([[1.0, 1.0]], [[1.0, 1.0]]), {}, "h and c must be 1-D of one length"),
        (([1.0, 1.0], [1.0, 1.0], 0), {}, "batch must be an integer >= 1, got 0"),
        (([1.0, 1.0], [1.0, 1.0], 2.0), {}, "batch must be an integer >= 1, got 2.0"),
        (([1.0, 1.0], [1.0, 1.0], True), {}, "batch must be an integer >= 1, got True"),
        (([1.0, 1.0], [1.0, 1.0]), {"center": [0.0]}, r"center must have shape \(2,\)"),
        (([1.0, 1.0], [1.0, 1.0]), {"group": [0, 1, 2]}, r"group must have shape \(2,\)"),
        (([1.0, 1.0], [1.0, 1.0]), {"sign": [1.0]}, r"sign must have shape \(2,\)"),
        (([1.0, 1.0], [1.0, 1.0]), {"group": [0, -1]}, "group must hold indices >= 0"),
        (([1.0, 1.0], [1.0, 1.0]), {"group": [0.7, 1.2]}, "group must hold integers"),
        (([1.0, 1.0], [1.0, 1.0]), {"x0": [1.0]}, r"x0 must have shape \(2,\)"),
        (([1.0, float("inf")], [1.0, 1.0]), {}, "h must be finite and > 0"),
        (([1.0, 1.0], [float("inf"), 1.0]), {}, "c must be finite and >= 0"),
    ],
)
def test_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoisyQuadratic(*args, **kwargs)


# ---- the trainer's SMA against the closed form -------------------------------------------------

H, C, BATCH = 2.0, 3.0, 4  # every coordinate; sigma2 = c / B = 0.75
D = 20000  # independent chains, one per coordinate


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: the tensors are small, and on a busy 2-core machine a second
    thread makes each step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def relaxation(rho: float, k: int, beta: float, feedback: bool) -> float:
    """Slowest contraction factor per optimizer step of the readout's dynamics: SGD's |1 - rho| and
    the average's beta^(1/k) without feedback; Lookahead's outer factor |1 - (1-beta)(1-u)|^(1/k),
    ``u = (1 - rho)^k``, with it."""
    if feedback:
        return abs(1 - (1 - beta) * (1 - (1 - rho) ** k)) ** (1 / k)
    return max(abs(1 - rho), beta ** (1 / k))


def run_sgd_with_sma(
    lr: float, k: int, beta: float, feedback: bool, steps: int, seed: int
) -> tuple[NoisyQuadratic, SMA]:
    model = NoisyQuadratic(torch.full((D,), H), torch.full((D,), C), BATCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    sma = SMA(model, k=k, beta=beta, feedback=feedback)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        model().backward()
        model.add_noise(gen)
        optimizer.step()
        sma.step()
    return model, sma


def z_variance(values: torch.Tensor, variance: float) -> float:
    """z-score of the mean square (the variance about the known mean 0) of iid N(0, variance)."""
    n = values.numel()
    return (values.pow(2).mean().item() - variance) / (variance * math.sqrt(2 / n))


# (rho = lr*h, k, beta, feedback, steps): rho > 1 and rho >= 2 (Lookahead only), k = 1 (EMA), u = 0.
CASES = [
    (0.5, 5, 0.9, False, 600),
    (0.5, 5, 0.9, True, 600),
    (1.5, 3, 0.8, False, 300),
    (1.5, 2, 0.7, True, 300),
    (0.2, 1, 0.95, False, 400),
    (0.1, 1, 0.5, True, 400),
    (1.0, 4, 0.6, False, 300),
    (0.05, 10, 0.9, False, 700),
    (0.1, 10, 0.8, True, 600),
    (2.2, 3, 0.5, True, 300),
]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("rho", "k", "beta", "feedback", "steps"),
    CASES,
    ids=[f"rho={r}-k={k}-beta={b}{'-feedback' if f else ''}" for r, k, b, f, _ in CASES],
)
def test_trainer_sma_matches_the_closed_form_steady_variance(rho, k, beta, feedback, steps):
    # Started at the minimum, the variance approaches its steady state like relaxation^(2t).
    assert relaxation(rho, k, beta, feedback) ** steps < 1e-3 and steps % k == 0
    lr = rho / H
    model, sma = run_sgd_with_sma(lr, k, beta, feedback, steps, seed=round(1000 * rho) + 10 * k)
    assert sma.samples == steps // k
    rule = rules.SMA(rules.SGD(lr), k, beta, feedback)
    variance = float(closed_form.steady_variance(rule, np.array([H]), np.array([C / BATCH]))[0])
    readout = sma.average["x"]
    assert abs(readout.mean().item()) / math.sqrt(variance / D) < Z
    assert abs(z_variance(readout, variance)) < Z
    if not feedback:
        # Without feedback the fast weights are plain SGD, untouched by the average.
        sgd = float(closed_form.sgd_variance(lr, np.array([H]), np.array([C / BATCH]))[0])
        assert abs(z_variance(model.x.detach(), sgd)) < Z
        assert variance < sgd * (1 - 8 * math.sqrt(2 / D))  # the comparison can tell them apart


@pytest.mark.usefixtures("one_thread")
def test_plain_sgd_matches_the_closed_form_variance():
    lr = 1.5 / H  # rho = 1.5: the iterates alternate in sign and still settle
    steps = 60  # |1 - rho|^60 = 1e-18
    model = NoisyQuadratic(torch.full((D,), H), torch.full((D,), C), BATCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(11)
    for _ in range(steps):
        optimizer.zero_grad()
        model().backward()
        model.add_noise(gen)
        optimizer.step()
    sgd = float(closed_form.sgd_variance(lr, np.array([H]), np.array([C / BATCH]))[0])
    assert sgd == pytest.approx(lr * (C / BATCH) / (H * (2 - 1.5)))
    assert abs(z_variance(model.x.detach(), sgd)) < Z
