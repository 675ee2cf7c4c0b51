"""lic_train.rules.sma: the sampling schedule, the averaging recurrence (plain, bias-corrected, with
feedback), where the average lives, the readout on a CompressAI model, checkpointing and validation."""

from __future__ import annotations

import copy
import io
import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from lic_train.rules import SMA  # noqa: E402
from lic_train.rules.parameters import is_quantiles  # noqa: E402


class Toy(nn.Module):
    """Two parameters and a buffer; ``forward`` is a linear map so that the module can be trained."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3, 4, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(3, dtype=dtype))
        self.register_buffer("counter", torch.zeros(2, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


def set_params(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Stand in for an optimizer step: give every parameter fresh random values; return them."""
    values = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype, generator=generator))
            values[name] = p.detach().clone()
    return values


def sample_steps(steps: int, k: int, start: int) -> list[int]:
    return [n for n in range(1, steps + 1) if n >= start and (n - start) % k == 0]


# ---- the sampling schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(("k", "start"), [(1, 0), (3, 0), (3, 1), (4, 7), (5, 2), (2, 30)])
def test_samples_exactly_on_the_scheduled_steps(k, start):
    model = Toy()
    sma = SMA(model, k=k, beta=0.5, start=start)
    gen = torch.Generator().manual_seed(0)
    expected = sample_steps(25, k, start)
    assert expected == [n for n in range(1, 26) if sma.due(n)]
    sampled, reference = [], None
    for n in range(1, 26):
        values = set_params(model, gen)
        assert sma.step() is (n in expected)
        if n in expected:
            sampled.append(n)
            reference = (
                values
                if reference is None
                else {name: 0.5 * reference[name] + 0.5 * values[name] for name in values}
            )
        assert sma.steps == n
        assert sma.samples == len(sampled)
        assert sma.ready is bool(sampled)
    assert sampled == expected
    if reference is None:
        assert sma.average == {}
    else:  # the average holds exactly the values of the sampled steps
        assert set(sma.average) == {"weight", "bias"}
        for name, ref in reference.items():
            torch.testing.assert_close(sma.average[name], ref, rtol=0, atol=1e-15)


def test_start_zero_first_samples_at_step_k():
    sma = SMA(Toy(), k=4, beta=0.9)
    assert [sma.step() for _ in range(8)] == [False, False, False, True] * 2


def test_tensors_are_the_live_parameters_before_the_first_sample_then_the_average():
    model = Toy()
    sma = SMA(model, k=2, beta=0.5)
    gen = torch.Generator().manual_seed(1)
    set_params(model, gen)
    sma.step()
    (w,) = sma.tensors(["weight"])
    assert torch.equal(w, model.weight.detach())
    with pytest.raises(RuntimeError, match="no sample"):
        sma.copy_to(Toy())
    theta = set_params(model, gen)
    sma.step()
    set_params(model, gen)  # the live parameters move on; the average stays at the sample
    b, w = sma.tensors(["bias", "weight"])
    assert torch.equal(w, theta["weight"]) and torch.equal(b, theta["bias"])
    assert not torch.equal(w, model.weight.detach())


# ---- the recurrence ----------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "beta", "start"), [(1, 0.9, 0), (3, 0.7, 2), (2, 0.0, 0)])
def test_average_follows_the_recurrence_from_the_first_sample(k, beta, start):
    model = Toy()
    sma = SMA(model, k=k, beta=beta, start=start)
    gen = torch.Generator().manual_seed(2)
    reference: dict[str, torch.Tensor] | None = None
    for _ in range(40):
        values = set_params(model, gen)
        if sma.step():
            if reference is None:
                reference = values
            else:
                reference = {n: beta * reference[n] + (1 - beta) * values[n] for n in values}
            for name, ref in reference.items():
                assert sma.average[name].dtype == torch.float64
                torch.testing.assert_close(sma.average[name], ref, rtol=0, atol=1e-14)
    assert sma.samples == len(sample_steps(40, k, start))


@pytest.mark.parametrize(("beta", "k"), [(0.9, 1), (0.99, 3), (0.5, 2)])
def test_bias_correction_gives_the_normalised_geometric_average(beta, k):
    model = Toy()
    sma = SMA(model, k=k, beta=beta, bias_correction=True)
    plain = SMA(model, k=k, beta=beta)
    gen = torch.Generator().manual_seed(3)
    history: list[dict[str, torch.Tensor]] = []
    for _ in range(30 * k):
        values = set_params(model, gen)
        plain.step()
        if not sma.step():
            continue
        history.append(values)
        j = len(history)
        weights = [beta ** (j - i) for i in range(1, j + 1)]
        total = math.fsum(weights)
        for name in values:
            ref = sum(w * h[name] for w, h in zip(weights, history, strict=True)) / total
            torch.testing.assert_close(sma.average[name], ref, rtol=0, atol=1e-14)
        if 2 <= j <= 4:  # the correction is real: the plain rule differs (by ~beta^j)
            assert not torch.allclose(sma.average["weight"], plain.average["weight"], atol=1e-6)


def test_bias_correction_at_beta_zero_is_the_last_sample():
    model = Toy()
    sma = SMA(model, k=1, beta=0.0, bias_correction=True)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        values = set_params(model, gen)
        sma.step()
        assert torch.equal(sma.average["weight"], values["weight"])


def torch_ema_shadow(history: list[torch.Tensor], decay: float) -> torch.Tensor:
    """torch_ema's ``ExponentialMovingAverage(use_num_updates=True)``, written from its formula:
    the shadow starts as a copy of the weights, and update n (from 1) uses
    ``min(decay, (1 + n) / (10 + n))``."""
    shadow = history[0].clone()
    for n, theta in enumerate(history[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        shadow = shadow - (1 - d) * (shadow - theta)
    return shadow


@pytest.mark.parametrize(("beta", "k"), [(0.999, 1), (0.9, 1), (0.99, 3)])
def test_warmup_is_torch_emas_decay_warmup(beta, k):
    model = Toy()
    sma = SMA(model, k=k, beta=beta, warmup=True)
    plain = SMA(model, k=k, beta=beta)
    gen = torch.Generator().manual_seed(5)
    history: list[torch.Tensor] = []
    for _ in range(200 * k):
        values = set_params(model, gen)
        plain.step()
        if sma.step():  # its first sample is torch_ema's copy of the weights
            history.append(values["weight"])
            expected = torch_ema_shadow(history, beta)
            torch.testing.assert_close(sma.average["weight"], expected, rtol=0, atol=1e-12)
    # The warm-up is real at a slow decay: the plain rule still remembers its first sample.
    first = history[0]
    distance_from_first = lambda avg: float((avg - first).norm())  # noqa: E731
    if beta == 0.999:
        assert distance_from_first(sma.average["weight"]) > distance_from_first(
            plain.average["weight"]
        )


def test_warmup_and_bias_correction_exclude_each_other():
    with pytest.raises(ValueError, match="bias_correction and warmup: give one"):
        SMA(Toy(), k=1, beta=0.9, warmup=True, bias_correction=True)
    with pytest.raises(ValueError, match="warmup must be True or False"):
        SMA(Toy(), k=1, beta=0.9, warmup="yes")


def test_load_state_dict_rejects_another_warmup():
    model = Toy()
    sma = SMA(model, k=1, beta=0.9, warmup=True)
    sma.step()
    with pytest.raises(ValueError, match="warmup=True"):
        SMA(model, k=1, beta=0.9).load_state_dict(sma.state_dict())
    state = SMA(model, k=1, beta=0.9).state_dict()
    del state["warmup"]  # a checkpoint of a version before the warm-up: it had none
    SMA(model, k=1, beta=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="SMA state has warmup=False"):
        SMA(model, k=1, beta=0.9, warmup=True).load_state_dict(state)


def test_feedback_resets_the_fast_weights_on_sampling_steps_only():
    model = Toy()
    k, beta = 3, 0.6
    sma = SMA(model, k=k, beta=beta, start=2, feedback=True)
    gen = torch.Generator().manual_seed(5)
    reference = None
    for _ in range(20):
        values = set_params(model, gen)
        sampled = sma.step()
        live = {n: p.detach() for n, p in model.named_parameters()}
        if not sampled:
            for name in values:
                assert torch.equal(live[name], values[name])
            continue
        reference = (
            values
            if reference is None
            else {n: beta * reference[n] + (1 - beta) * values[n] for n in values}
        )
        for name in values:
            torch.testing.assert_close(sma.average[name], reference[name], rtol=0, atol=1e-14)
            assert torch.equal(live[name], sma.average[name])
            assert live[name].data_ptr() != sma.average[name].data_ptr()  # a copy, not an alias
    assert sma.samples == 7


def test_feedback_is_lookahead_from_the_fast_weights():
    """With feedback the next sample averages the fast weights that started from the average:
    after two samples the average is beta*y1 + (1-beta)*theta2, and theta2 began at y1."""
    model = Toy()
    sma = SMA(model, k=1, beta=0.75, feedback=True)
    with torch.no_grad():
        model.weight.fill_(4.0)
    sma.step()
    with torch.no_grad():
        model.weight.add_(8.0)  # an optimizer step from the reset point 4 -> 12
    sma.step()
    assert torch.equal(model.weight.detach(), torch.full((3, 4), 6.0, dtype=torch.float64))


def test_average_on_cpu_in_float64_for_float32_weights():
    model = Toy(dtype=torch.float32)
    sma = SMA(model, k=1, beta=0.5, device="cpu", dtype=torch.float64)
    gen = torch.Generator().manual_seed(6)
    first = set_params(model, gen)
    sma.step()
    second = set_params(model, gen)
    sma.step()
    for name, avg in sma.average.items():
        assert avg.dtype == torch.float64
        assert avg.device == torch.device("cpu")
        ref = 0.5 * first[name].double() + 0.5 * second[name].double()
        torch.testing.assert_close(avg, ref, rtol=0, atol=1e-15)  # no float32 rounding
    assert sma.nbytes() == (12 + 3) * 8
    default = SMA(model, k=1, beta=0.5)
    default.step()
    assert all(t.dtype == torch.float32 for t in default.average.values())
    assert default.nbytes() == (12 + 3) * 4


def test_feedback_with_a_float64_average_writes_float32_weights():
    model = Toy(dtype=torch.float32)
    sma = SMA(model, k=1, beta=0.5, feedback=True, dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        set_params(model, gen)
        sma.step()
        assert model.weight.dtype == torch.float32
        assert torch.equal(model.weight.detach(), sma.average["weight"].float())


# ---- the readout on a CompressAI model ---------------------------------------------------------


def test_averaged_copy_of_a_compressai_model():
    compressai_models = pytest.importorskip("compressai.models")
    torch.manual_seed(0)
    model = compressai_models.ScaleHyperprior(8, 16)
    net = [p for n, p in model.named_parameters() if not is_quantiles(n)]
    quantiles = [p for n, p in model.named_parameters() if is_quantiles(n)]
    assert quantiles  # the entropy bottleneck's quantiles exist and are averaged too
    optimizer = torch.optim.Adam(net, lr=1e-3)
    aux_optimizer = torch.optim.Adam(quantiles, lr=1e-2)
    sma = SMA(model, k=2, beta=0.5, start=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        x = torch.rand(2, 3, 64, 64, generator=gen)
        out = model(x)
        bpp = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()) / (2 * 64 * 64)
        loss = 0.01 * 255**2 * nn.functional.mse_loss(out["x_hat"], x) + bpp
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        aux = model.aux_loss()
        aux.backward()
        aux_optimizer.step()
        sma.step()
    assert sma.samples == 3  # steps 1, 3, 5
    assert set(sma.average) == {n for n, _ in model.named_parameters()}

    model.update(force=True)
    live = {n: t.clone() for n, t in model.state_dict().items()}
    clone = sma.averaged_copy(model)
    assert clone is not model
    params = dict(clone.named_parameters())
    differs = []
    for name, avg in sma.average.items():
        assert torch.equal(params[name], avg)
        differs.append(not torch.equal(avg, live[name]))
    assert any(differs) and all(
        d for n, d in zip(sma.average, differs, strict=True) if is_quantiles(n)
    )
    buffers = dict(clone.named_buffers())
    assert buffers.keys() == dict(model.named_buffers()).keys()
    assert any("_quantized_cdf" in n for n in buffers)
    for name, buf in model.named_buffers():
        assert torch.equal(buffers[name], buf)  # never averaged: CDF tables copied as they are
    for name, t in model.state_dict().items():
        assert torch.equal(t, live[name])  # the live model is untouched

    clone.update(force=True)
    image = torch.rand(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        coded = clone.compress(image)
        decoded = clone.decompress(coded["strings"], coded["shape"])
    assert decoded["x_hat"].shape == (1, 3, 64, 64)
    assert torch.isfinite(decoded["x_hat"]).all()
    for name, t in model.state_dict().items():
        assert torch.equal(t, live[name])  # updating the copy left the live CDFs alone


def test_copy_to_rejects_a_model_without_the_averaged_parameters():
    model = Toy()
    sma = SMA(model, k=1, beta=0.5)
    sma.step()
    with pytest.raises(ValueError, match="bias"):
        sma.copy_to(nn.Linear(4, 3, bias=False))


# ---- checkpointing -----------------------------------------------------------------------------


def _train(model: nn.Module, sma: SMA, optimizer, batches) -> None:
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        sma.step()


def _batches(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 4, dtype=torch.float64, generator=gen), torch.randn(8, 3, generator=gen))
        for _ in range(n)
    ]


CONFIG = {"k": 3, "beta": 0.8, "start": 2, "feedback": True, "bias_correction": True}


def test_state_dict_round_trip_continues_bit_identically():
    batches = _batches(40, seed=8)
    torch.manual_seed(0)
    whole = Toy()
    start = copy.deepcopy(whole.state_dict())
    whole_opt = torch.optim.SGD(whole.parameters(), lr=0.1, momentum=0.9)
    whole_sma = SMA(whole, **CONFIG)
    _train(whole, whole_sma, whole_opt, [(x, y.double()) for x, y in batches])

    first = Toy()
    first.load_state_dict(start)
    first_opt = torch.optim.SGD(first.parameters(), lr=0.1, momentum=0.9)
    first_sma = SMA(first, **CONFIG)
    _train(first, first_sma, first_opt, [(x, y.double()) for x, y in batches[:17]])
    buffer = io.BytesIO()
    torch.save(
        {"model": first.state_dict(), "opt": first_opt.state_dict(), "sma": first_sma.state_dict()},
        buffer,
    )
    saved = first_sma.state_dict()
    _train(first, first_sma, first_opt, [(x, y.double()) for x, y in batches[17:20]])
    assert not torch.equal(saved["average"]["weight"], first_sma.average["weight"])  # a copy

    buffer.seek(0)
    checkpoint = torch.load(buffer)
    second = Toy()
    second.load_state_dict(checkpoint["model"])
    second_opt = torch.optim.SGD(second.parameters(), lr=0.1, momentum=0.9)
    second_opt.load_state_dict(checkpoint["opt"])
    second_sma = SMA(second, **CONFIG)
    second_sma.load_state_dict(checkpoint["sma"])
    assert (second_sma.steps, second_sma.samples) == (17, 6)
    _train(second, second_sma, second_opt, [(x, y.double()) for x, y in batches[17:]])

    assert (second_sma.steps, second_sma.samples) == (whole_sma.steps, whole_sma.samples)
    for name, avg in whole_sma.average.items():
        assert torch.equal(second_sma.average[name], avg)
    for name, p in whole.named_parameters():
        assert torch.equal(dict(second.named_parameters())[name], p)


@pytest.mark.parametrize(
    ("field", "value"),
    [("k", 4), ("beta", 0.5), ("start", 0), ("feedback", False), ("bias_correction", False)],
)
def test_load_state_dict_rejects_another_configuration(field, value):
    model = Toy()
    sma = SMA(model, **CONFIG)
    for _ in range(5):
        sma.step()
    other = SMA(model, **{**CONFIG, field: value})
    with pytest.raises(ValueError, match=rf"{field}={value!r}"):
        other.load_state_dict(sma.state_dict())
    assert other.steps == 0 and other.average == {}  # nothing half-loaded


def test_load_state_dict_rejects_a_parameter_the_model_lacks():
    sma = SMA(Toy(), k=1, beta=0.5)
    sma.step()
    other = SMA(nn.Linear(4, 3, bias=False).double(), k=1, beta=0.5)
    with pytest.raises(ValueError, match="bias"):
        other.load_state_dict(sma.state_dict())


def test_load_state_dict_rejects_an_average_that_misses_a_parameter():
    sma = SMA(nn.Linear(4, 3, bias=False).double(), k=1, beta=0.5)
    sma.step()
    other = SMA(Toy(), k=1, beta=0.5)
    with pytest.raises(ValueError, match="no average of the model's parameter 'bias'"):
        other.load_state_dict(sma.state_dict())
    before_any_sample = SMA(nn.Linear(4, 3, bias=False).double(), k=1, beta=0.5).state_dict()
    other.load_state_dict(before_any_sample)  # nothing averaged yet: nothing is missing
    assert not other.ready


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, r"k must be an integer in \[1, 2\*\*53\], got 0"),
        ({"k": 1.5}, r"k must be an integer in \[1, 2\*\*53\], got 1.5"),
        ({"k": True}, r"k must be an integer in \[1, 2\*\*53\]"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\), got 1.0"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\), got -0.1"),
        ({"beta": float("nan")}, r"beta must be in \[0, 1\), got nan"),
        ({"beta": "0.9"}, r"beta must be a real number in \[0, 1\)"),
        ({"start": -1}, r"start must be an integer in \[0, 2\*\*53\], got -1"),
        ({"feedback": "yes"}, r"feedback must be True or False, got 'yes'"),
        ({"bias_correction": 1}, r"bias_correction must be True or False, got 1"),
    ],
)
def test_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SMA(Toy(), **kwargs)


def test_integral_float_k_is_accepted():
    sma = SMA(Toy(), k=2.0, beta=0.5)
    assert sma.k == 2 and isinstance(sma.k, int)


# ---- wrapped models ----------------------------------------------------------------------------


def test_data_parallel_wrapper_is_unwrapped():
    inner = Toy()
    wrapped = nn.DataParallel(inner)
    assert all(n.startswith("module.") for n, _ in wrapped.named_parameters())
    sma = SMA(wrapped, k=1, beta=0.5)
    gen = torch.Generator().manual_seed(9)
    values = set_params(inner, gen)
    sma.step()
    assert set(sma.average) == {"weight", "bias"}
    clone = sma.averaged_copy(wrapped)
    assert type(clone) is Toy
    assert torch.equal(clone.weight, values["weight"])
    plain = SMA(Toy(), k=1, beta=0.5)
    plain.load_state_dict(sma.state_dict())  # a state saved from the wrapper loads unwrapped
    assert torch.equal(plain.average["bias"], values["bias"])
