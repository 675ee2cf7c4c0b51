"""STDET: planted modes on the torch NQM, exact embedding, what the optimizer sees, state round trips,
the theory's variance of embedded coordinates, and a real CompressAI model."""

from __future__ import annotations

import copy
import io
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lic_train.rules import SMA, chain_of  # noqa: E402
from lic_train.rules.stdet import DUMMY, STDET, TRAINABLE, TRUE, STDETConfig  # noqa: E402
from lic_train.rules.stdet.optimizer import owner  # noqa: E402
from lic_train.testing import NoisyQuadratic  # noqa: E402
from nqm.closed_form import sgd_variance  # noqa: E402
from nqm.embedding import Tie  # noqa: E402

GROUP_H = (0.2, 0.5, 1.0)


def planted(
    members: int = 40, seed: int = 0, jitter: float = 0.0
) -> tuple[NoisyQuadratic, torch.Tensor, torch.Tensor]:
    """A torch NQM whose coordinates come in three groups sharing curvature and noise: within a
    group ``x_j - center_j = (s_j sqrt(c_j)) / (s_r sqrt(c_r)) (x_r - center_r)`` exactly. With
    ``jitter`` > 0 the curvatures differ by up to that factor inside a group: the lines are then
    only approximate."""
    g = torch.Generator().manual_seed(seed)
    group = torch.arange(len(GROUP_H)).repeat_interleave(members)
    h = torch.tensor(GROUP_H, dtype=torch.float64)[group]
    h = h * (1 + jitter * torch.rand(group.numel(), generator=g, dtype=torch.float64))
    c = 0.5 + 1.5 * torch.rand(group.numel(), generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(group.numel(), generator=g) < 0.3, -1.0, 1.0).double()
    center = torch.randn(group.numel(), generator=g, dtype=torch.float64)
    model = NoisyQuadratic(h, c, center=center, group=group, sign=sign)
    return model, group, sign * c.sqrt()


def nqm_backward(model, optimizer, stdet, generator):
    """The first half of a step: a noisy gradient, then the rules' after_backward."""
    optimizer.zero_grad()
    model().backward()
    model.add_noise(generator)
    chain_of(stdet=stdet).after_backward()


def nqm_step(model, optimizer, stdet, generator, sma=None):
    nqm_backward(model, optimizer, stdet, generator)
    optimizer.step()
    chain_of(sma=sma, stdet=stdet).after_step()


PLANTED = STDETConfig(
    snapshot_every=2,
    snapshots=30,
    every=40,
    modes=3,
    samples=120,
    fraction=0.25,
    max_embedded=0.9,
    min_r2=0.5,
    keep_sensitive=0.0,
    variant="true",
)


def test_planted_groups_are_the_modes_and_embedded_coordinates_follow_their_reference():
    model, group, loading = planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    stdet = STDET(model, optimizer, PLANTED)
    g = torch.Generator().manual_seed(1)
    for _ in range(PLANTED.warmup):
        nqm_step(model, optimizer, stdet, g)
    mode, reference = stdet.modes.mode, stdet.modes.reference
    assert sorted(group[reference].tolist()) == [0, 1, 2]
    assert torch.equal(group[reference][mode], group)  # every coordinate in its planted group
    a, b = stdet.modes.coefficients()
    planted_a = loading / loading[reference][mode]
    torch.testing.assert_close(a, planted_a, rtol=1e-6, atol=1e-9)
    center = model.center
    torch.testing.assert_close(b, center - planted_a * center[reference][mode], rtol=0, atol=1e-6)
    for _ in range(170):
        nqm_step(model, optimizer, stdet, g)
        embedded = stdet.lines.kind != TRAINABLE
        x = model.x.detach()
        follow = torch.addcmul(stdet.lines.b, stdet.lines.a, x[reference][mode])
        assert torch.equal(x[embedded], follow[embedded])  # exactly, after every step
    assert stdet.lines.counts()["true"] == math.floor(0.9 * 120)
    assert stdet.trainable_fraction() == pytest.approx(1 - math.floor(0.9 * 120) / 120)


def test_embedded_variance_is_the_theory_of_tied_coordinates():
    """After true embedding, Var(x_j) = a_j^2 V_SGD(reference): ``nqm.embedding.Tie`` on the NQM's
    closed form. Time averages over a long stationary run; standard errors by batch means."""
    model, _, _ = planted(members=20, seed=4)
    lr = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    config = STDETConfig(**{**PLANTED.__dict__, "samples": 60, "fraction": 0.9})
    stdet = STDET(model, optimizer, config)
    g = torch.Generator().manual_seed(7)
    for _ in range(config.warmup + config.every):
        nqm_step(model, optimizer, stdet, g)
    embedded = torch.nonzero(stdet.lines.kind == TRUE).squeeze(1)
    assert embedded.numel() == math.floor(0.9 * 60)
    reference = stdet.modes.reference[stdet.modes.mode[embedded]]
    steps, batches = 8_000, 40
    trace = torch.empty(steps, model.x.numel(), dtype=torch.float64)
    for t in range(steps):
        nqm_step(model, optimizer, stdet, g)
        trace[t] = model.x.detach()
    variance_untied = sgd_variance(lr, model.h.numpy(), (model.noise_scale**2).numpy())
    tie = Tie(
        embedded.numpy(),
        reference.numpy(),
        stdet.lines.a[embedded].numpy(),
        np.zeros(len(embedded)),
    )
    _, want = tie.apply_steady(variance_untied)
    deviation = (trace - model.center).numpy()
    per_batch = (deviation**2).reshape(batches, steps // batches, -1).mean(axis=1)
    got, se = per_batch.mean(axis=0), per_batch.std(axis=0, ddof=1) / np.sqrt(batches)
    z = (got - want) / se
    assert np.abs(z).max() < 4.5, z
    # The embedded coordinates' means are the planted centers: the fitted line passes the optimum.
    means = deviation.reshape(batches, steps // batches, -1).mean(axis=1)
    z_mean = means.mean(axis=0) / (means.std(axis=0, ddof=1) / np.sqrt(batches))
    assert np.abs(z_mean).max() < 4.5, z_mean


def embedded_during(config: STDETConfig, optimizer_factory, steps: int, seed: int = 0):
    model, _, _ = planted(seed=seed, jitter=0.5)
    optimizer = optimizer_factory(model.parameters())
    stdet = STDET(model, optimizer, config)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        nqm_step(model, optimizer, stdet, g)
    return model, optimizer, stdet, g


def test_adam_never_moves_embedded_scalars_even_with_large_gradients():
    config = STDETConfig(**{**PLANTED.__dict__, "max_embedded": 0.5})
    model, optimizer, stdet, g = embedded_during(
        config, lambda p: torch.optim.Adam(p, lr=0.3), config.warmup + config.every
    )
    model.noise_scale.mul_(1e3)  # large gradients from here on
    embedded = stdet.lines.kind != TRAINABLE
    assert 0 < int(embedded.sum()) < embedded.numel()
    # The rules run after the checks, so that what Adam alone does to the embedded entries shows.
    for _ in range(100):
        before = model.x.detach().clone()
        nqm_backward(model, optimizer, stdet, g)
        assert torch.all(model.x.grad[embedded] == 0)
        optimizer.step()
        assert torch.equal(model.x.detach()[embedded], before[embedded])  # Adam's update is 0
        assert not torch.equal(model.x.detach()[~embedded], before[~embedded])
        chain_of(stdet=stdet).after_step()
        for value in optimizer.state[model.x].values():
            if value.shape == model.x.shape:
                assert torch.all(value[embedded] == 0)


class ThreeTensors(torch.nn.Module):
    """Three tensors whose scalars each chase a multiple of one of two random walks: two modes,
    whose references lie in at most two of the tensors, so at least one tensor can be embedded
    whole."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.second = torch.nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
        self.third = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
        g = torch.Generator().manual_seed(11)
        for name, shape in (("first", (2,)), ("second", (3, 4)), ("third", (5,))):
            self.register_buffer(f"{name}_loading", 0.5 + torch.rand(shape, generator=g).double())
            self.register_buffer(f"{name}_walk", torch.randint(0, 2, shape, generator=g))

    def forward(self, walk: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros((), dtype=torch.float64)
        for name in ("first", "second", "third"):
            target = getattr(self, f"{name}_loading") * walk[getattr(self, f"{name}_walk")]
            loss = loss + ((getattr(self, name) - target) ** 2).sum()
        return loss


def three_tensor_run(steps: int, config: STDETConfig, seed: int = 0):
    model = ThreeTensors()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    stdet = STDET(model, optimizer, config)
    g = torch.Generator().manual_seed(seed)
    walk = torch.zeros(2, dtype=torch.float64)
    for _ in range(steps):
        walk += torch.randn(2, generator=g, dtype=torch.float64)
        optimizer.zero_grad()
        model(walk).backward()
        chain_of(stdet=stdet).after_backward()
        optimizer.step()
        chain_of(stdet=stdet).after_step()
    return model, optimizer, stdet


WHOLE = STDETConfig(
    snapshot_every=1, snapshots=20, every=10, modes=2, samples=19, fraction=1.0,
    max_embedded=1.0, min_r2=0.0, keep_sensitive=0.0, variant="dummy",
)  # fmt: skip


def test_a_fully_embedded_tensor_leaves_the_optimizer_and_autograd():
    model, optimizer, stdet = three_tensor_run(WHOLE.warmup + WHOLE.every, WHOLE)
    assert stdet.modes.reference.numel() == 2
    holds_reference = {stdet.names[stdet.offsets.index(max(o for o in stdet.offsets if o <= r))]
                       for r in stdet.modes.reference.tolist()}  # fmt: skip
    removed = set(stdet.removed_tensors())
    assert removed == {"first", "second", "third"} - holds_reference
    assert removed
    for name, p in model.named_parameters():
        in_groups = any(owner(q) is p for group in optimizer.param_groups for q in group["params"])
        if name in removed:
            assert not p.requires_grad and p.grad is None
            assert p not in optimizer.state and not in_groups
        else:
            assert p.requires_grad and in_groups
    assert stdet.trainable_fraction() == pytest.approx(2 / 19)
    # Training goes on; the removed tensors get no gradient and track their references exactly.
    walk = torch.tensor([3.0, -1.0], dtype=torch.float64)
    rules = chain_of(stdet=stdet)
    for _ in range(5):
        optimizer.zero_grad()
        model(walk).backward()
        rules.after_backward()
        optimizer.step()
        rules.after_step()
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    r = theta[stdet.modes.reference][stdet.modes.mode]
    follow = torch.addcmul(stdet.lines.b, stdet.lines.a, r)
    embedded = stdet.lines.kind != TRAINABLE
    assert torch.equal(theta[embedded], follow[embedded])
    for name in removed:
        assert getattr(model, name).grad is None


def test_dummy_embedding_keeps_the_value_and_true_embedding_snaps_onto_the_line():
    for variant in ("dummy", "true"):
        config = STDETConfig(**{**PLANTED.__dict__, "variant": variant, "min_r2": 0.0})
        model, optimizer, stdet, g = embedded_during(
            config, lambda p: torch.optim.SGD(p, lr=0.5), config.warmup + config.every - 1
        )
        nqm_backward(model, optimizer, stdet, g)
        optimizer.step()
        before = model.x.detach().clone()
        chain_of(stdet=stdet).after_step()  # the first event
        a, b = stdet.modes.coefficients()
        embedded = stdet.lines.kind != TRAINABLE
        assert int(embedded.sum()) > 0
        r = before[stdet.modes.reference][stdet.modes.mode]
        after = model.x.detach()
        if variant == "dummy":
            torch.testing.assert_close(after[embedded], before[embedded], rtol=0, atol=1e-12)
        else:
            torch.testing.assert_close(after[embedded], (a * r + b)[embedded], rtol=0, atol=1e-12)
            assert not torch.allclose(after[embedded], before[embedded])


def test_sensitivity_variant_splits_by_sensitivity_and_keeps_the_most_sensitive():
    config = STDETConfig(
        **{**PLANTED.__dict__, "variant": "sensitivity", "keep_sensitive": 0.25, "min_r2": 0.0}
    )
    model, optimizer, stdet, g = embedded_during(
        config, lambda p: torch.optim.SGD(p, lr=0.5), config.warmup + config.every - 1
    )
    nqm_backward(model, optimizer, stdet, g)
    sensitivity = stdet.sensitivity().clone()
    optimizer.step()
    chain_of(stdet=stdet).after_step()
    chosen = math.ceil(config.fraction * 120)
    kept = math.floor(config.keep_sensitive * chosen)
    n_true = int((stdet.lines.kind == TRUE).sum())
    n_dummy = int((stdet.lines.kind == DUMMY).sum())
    assert n_true + n_dummy == chosen - kept
    assert n_true == round(config.sensitivity_quantile * (chosen - kept))
    assert (
        sensitivity[stdet.lines.kind == TRUE].max() <= sensitivity[stdet.lines.kind == DUMMY].min()
    )
    assert (sensitivity > 0).all()


def test_candidates_respect_the_fit_floor_the_cap_and_never_include_references():
    config = STDETConfig(**{**PLANTED.__dict__, "min_r2": 0.9999, "max_embedded": 0.3})
    _, _, stdet, _ = embedded_during(
        config, lambda p: torch.optim.SGD(p, lr=0.5), config.warmup + 6 * config.every
    )
    embedded = stdet.lines.kind != TRAINABLE
    assert int(embedded.sum()) <= math.floor(0.3 * 120)
    assert not embedded[stdet.modes.reference].any()
    assert (stdet.modes.r_squared()[embedded] >= 0.9999 - 1e-9).all()


def hyperprior(seed: int = 0):
    from compressai.models import ScaleHyperprior

    torch.manual_seed(seed)
    model = ScaleHyperprior(8, 12)
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return model, torch.optim.Adam(net, lr=1e-3), torch.optim.Adam(aux, lr=1e-3)


# Unbounded leverage, so that whole tensors leave the optimizer (and others are packed).
SMALL = STDETConfig(
    snapshot_every=2,
    snapshots=4,
    every=4,
    modes=4,
    samples=200,
    fraction=0.3,
    max_embedded=0.95,
    max_amplification=0.0,
)


def train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, steps, generator):
    """``steps`` steps of the trainer's own step (:func:`train_step`) with SMA and STDET."""
    from compressai.losses import RateDistortionLoss

    from lic_train.trainer.step import train_step

    criterion = RateDistortionLoss(lmbda=0.01)
    rules = chain_of(sma=sma, stdet=stdet)
    losses = []
    for _ in range(steps):
        x = torch.rand(2, 3, 64, 64, generator=generator)
        step_losses, _ = train_step(
            model, x, criterion, optimizer, aux_optimizer, rules, clip_max_norm=1.0
        )
        losses.append(step_losses["loss"].item())
    return losses


def test_on_a_compressai_hyperprior_the_trainable_fraction_falls_and_the_loss_stays_finite():
    model, optimizer, aux_optimizer = hyperprior()
    sma = SMA(model, k=2, beta=0.9)
    stdet = STDET(model, optimizer, SMALL, trajectory=sma)
    assert not any(name.endswith(".quantiles") for name in stdet.names)
    g = torch.Generator().manual_seed(0)
    losses = train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, SMALL.warmup, g)
    assert stdet.trainable_fraction() == 1.0
    losses += train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, 30, g)
    assert all(math.isfinite(v) for v in losses)
    assert stdet.trainable_fraction() < 0.5
    assert not (stdet.lines.kind[stdet.modes.reference] != TRAINABLE).any()
    quantiles = model.entropy_bottleneck.quantiles
    assert quantiles.requires_grad
    assert stdet.removed_tensors()  # some tensors are wholly embedded
    # The averaged copy codes real bit streams.
    clone = sma.averaged_copy(model)
    clone.update(force=True)
    x = torch.rand(1, 3, 64, 64, generator=g)
    out = clone.decompress(**clone.compress(x))
    assert out["x_hat"].shape == x.shape


def test_tensor_granularity_embeds_whole_tensors_that_leave_the_optimizer():
    model, optimizer, aux_optimizer = hyperprior()
    sma = SMA(model, k=2, beta=0.9)
    config = STDETConfig(**{**SMALL.__dict__, "granularity": "tensor", "max_embedded": 0.6})
    stdet = STDET(model, optimizer, config, trajectory=sma)
    g = torch.Generator().manual_seed(0)
    train_hyperprior(
        model, optimizer, aux_optimizer, sma, stdet, config.warmup + 3 * config.every, g
    )
    embedded = stdet.lines.kind != TRAINABLE
    assert 0 < int(embedded.sum()) <= math.floor(0.6 * stdet.size)
    whole = set()
    for i, name in enumerate(stdet.names):
        part = embedded[stdet.offsets[i] : stdet.offsets[i + 1]]
        assert part.all() or not part.any(), name  # all or nothing per tensor
        if part.all():
            whole.add(name)
    assert set(stdet.removed_tensors()) == whole
    assert any(name.endswith("weight") for name in whole)  # convolutions too, not just biases
    in_optimizer = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert in_optimizer == stdet.size - int(embedded.sum())
    assert not embedded[stdet.modes.reference].any()


def test_state_dict_round_trip_continues_bit_identically():
    def build():
        model, optimizer, aux_optimizer = hyperprior(seed=3)
        sma = SMA(model, k=2, beta=0.8)
        stdet = STDET(model, optimizer, SMALL, trajectory=sma)
        return model, optimizer, aux_optimizer, sma, stdet

    first, second = 20, 10  # events at 12, 16, 20 (before the split), 24, 28
    parts = build()
    g = torch.Generator().manual_seed(5)
    train_hyperprior(*parts, first + second, g)
    uninterrupted = parts[0].state_dict()

    parts = build()
    g = torch.Generator().manual_seed(5)
    train_hyperprior(*parts, first, g)
    model, optimizer, aux_optimizer, sma, stdet = parts
    assert stdet.removed_tensors()
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "aux": aux_optimizer.state_dict(),
            "sma": sma.state_dict(),
            "stdet": stdet.state_dict(),
            "rng": g.get_state(),
            "torch_rng": torch.get_rng_state(),  # CompressAI's training noise draws from it
        },
        buffer,
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model, optimizer, aux_optimizer, sma, stdet = build()
    model.load_state_dict(saved["model"])
    stdet.load_state_dict(saved["stdet"])  # before the optimizer: its param groups shrink
    optimizer.load_state_dict(saved["optimizer"])
    aux_optimizer.load_state_dict(saved["aux"])
    sma.load_state_dict(saved["sma"])
    g = torch.Generator()
    g.set_state(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, second, g)
    resumed = model.state_dict()
    assert uninterrupted.keys() == resumed.keys()
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], resumed[name]), name


def assert_embedded_on_their_lines(stdet: STDET, tensors: list[torch.Tensor]) -> None:
    """Something is embedded, and every embedded scalar of ``tensors`` (aligned with the tracked
    parameters) equals ``a * reference + b`` within float32 rounding."""
    theta = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    r = theta[stdet.modes.reference][stdet.modes.mode]
    embedded = stdet.lines.kind != TRAINABLE
    assert int(embedded.sum()) > 0
    want = (stdet.lines.a * r + stdet.lines.b)[embedded]
    torch.testing.assert_close(theta[embedded], want, rtol=0, atol=1e-6)


def test_the_sma_samples_embedded_scalars_on_their_lines():
    """The embedding table recomputes embedded scalars before the SMA samples them, even with an
    optimizer (SGD with weight decay) that moves them: the average of an embedded scalar is then the
    affine image of the reference's average over the samples since its embedding."""
    model, optimizer, aux_optimizer = hyperprior()
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    optimizer = torch.optim.SGD(net, lr=1e-2, momentum=0.9, weight_decay=0.1)
    config = STDETConfig(**{**SMALL.__dict__, "max_embedded": 0.5})
    stdet = STDET(model, optimizer, config)
    sma = SMA(model, k=1, beta=0.0)  # the average is the last sample
    g = torch.Generator().manual_seed(0)
    train_hyperprior(
        model, optimizer, aux_optimizer, sma, stdet, config.warmup + 2 * config.every, g
    )
    assert_embedded_on_their_lines(stdet, [sma.average[n] for n in stdet.names])


def test_with_a_feedback_sma_embedded_scalars_stay_on_their_lines():
    """An SMA with feedback resets the weights to its average after each sample; the embedding
    table runs again after it (``chain_of``), so the embedded scalars end the step on their
    lines."""
    model, optimizer, aux_optimizer = hyperprior()
    sma = SMA(model, k=1, beta=0.5, feedback=True)  # a reset at every step
    stdet = STDET(model, optimizer, SMALL, trajectory=sma)
    assert "embedding_after_feedback" in chain_of(sma=sma, stdet=stdet)
    g = torch.Generator().manual_seed(0)
    train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, SMALL.warmup + 3 * SMALL.every, g)
    assert_embedded_on_their_lines(stdet, stdet.params)


def test_stdet_refuses_to_run_without_its_embedding_table():
    model, optimizer, _ = hyperprior()
    stdet = STDET(model, optimizer, SMALL)
    with pytest.raises(RuntimeError, match="embedding table did not run"):
        stdet.after_step()


def test_channels_last_parameters_work():
    model, optimizer, aux_optimizer = hyperprior()
    model = model.to(memory_format=torch.channels_last)
    assert not model.g_a[0].weight.is_contiguous()
    sma = SMA(model, k=2, beta=0.9)
    stdet = STDET(model, optimizer, SMALL, trajectory=sma)
    g = torch.Generator().manual_seed(0)
    train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, SMALL.warmup + 3 * SMALL.every, g)
    assert_embedded_on_their_lines(stdet, stdet.params)


def test_frozen_parameters_are_not_tracked():
    model, optimizer, _ = hyperprior()
    model.g_a[0].bias.requires_grad_(False)
    assert "g_a.0.bias" not in STDET(model, optimizer, SMALL).names


def test_float64_weights_keep_a_float64_history():
    model, _, _ = planted()
    stdet = STDET(model, torch.optim.SGD(model.parameters(), lr=0.1), PLANTED)
    assert stdet.modes.snapshot_dtype == torch.float64


def test_state_dict_refuses_another_configuration():
    model, optimizer, _ = hyperprior()
    state = STDET(model, optimizer, SMALL).state_dict()
    other = STDET(model, optimizer, STDETConfig(**{**SMALL.__dict__, "modes": 5}))
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("snapshot_every", 0, r"snapshot_every must be an integer in \[1"),
        ("snapshots", 2, r"snapshots must be an integer in \[3"),
        ("every", 0, r"every must be an integer in \[1"),
        ("every", 5, r"every must be at least snapshot_every \(10\), got 5"),
        ("modes", 0, r"modes must be an integer in \[1"),
        ("modes", 257, r"modes must be an integer in \[1, 256\]"),
        ("samples", 1, r"samples must be an integer in \[2"),
        ("fraction", 0.0, r"fraction must be in \(0, 1\]"),
        ("fraction", 1.5, r"fraction must be in \(0, 1\]"),
        ("max_embedded", float("nan"), r"max_embedded must be in \(0, 1\]"),
        ("min_r2", -0.1, r"min_r2 must be in \[0, 1\]"),
        ("keep_sensitive", 1.0, r"keep_sensitive must be in \[0, 1\)"),
        ("sensitivity_quantile", 2.0, r"sensitivity_quantile must be in \[0, 1\]"),
        ("variant", "both", "variant must be one of sensitivity, true, dummy, got 'both'"),
        ("granularity", "row", "granularity must be one of scalar, tensor, got 'row'"),
        ("trajectory", "mean", "trajectory must be one of sma, raw, got 'mean'"),
        ("seed", -3, r"seed must be an integer in \[0"),
    ],
)
def test_bad_configuration_is_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        STDETConfig(**{field: value})


def test_ddp_wrapper_is_unwrapped():
    model, optimizer, _ = hyperprior()
    wrapped = torch.nn.DataParallel(copy.deepcopy(model))
    names = STDET(wrapped, torch.optim.Adam(wrapped.parameters()), SMALL).names
    assert names == STDET(model, optimizer, SMALL).names
    assert not any(name.startswith("module.") for name in names)


@pytest.mark.parametrize("trajectory", ["sma", "raw"])
def test_cmd_observes_the_average_or_the_raw_weights_as_configured(trajectory):
    model, optimizer, aux_optimizer = hyperprior()
    sma = SMA(model, k=1, beta=0.9)
    stdet = STDET(model, optimizer, replace(SMALL, trajectory=trajectory), trajectory=sma)
    seen = []
    observe = stdet.modes.observe

    def spy(tensors):
        raw = [p.detach().clone() for p in stdet.params]
        average = [sma.average[n].clone() for n in stdet.names]
        seen.append(([t.detach().clone() for t in tensors], raw, average))
        observe(tensors)

    stdet.modes.observe = spy
    g = torch.Generator().manual_seed(0)
    train_hyperprior(model, optimizer, aux_optimizer, sma, stdet, 2 * SMALL.snapshot_every, g)
    assert len(seen) == 2
    for observed, raw, average in seen:
        assert not all(torch.equal(r, a) for r, a in zip(raw, average, strict=True))
        want = average if trajectory == "sma" else raw
        for o, w in zip(observed, want, strict=True):
            assert torch.equal(o, w)
