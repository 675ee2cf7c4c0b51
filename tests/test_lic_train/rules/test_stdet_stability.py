"""STDET's stability knobs and its health (since 0.2): live references, the leverage bound, the
extrapolation of the lines, release with a typical optimizer state, and the health numbers."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from lic_train.rules import chain_of  # noqa: E402
from lic_train.rules.stdet import STDET, TRAINABLE, STDETConfig  # noqa: E402
from lic_train.rules.stdet.optimizer import owner  # noqa: E402


class Walks(torch.nn.Module):
    """Two tensors whose scalars chase multiples of two random walks (``walk``), and a ``dead``
    tensor that the loss never sees: its trajectory stands still up to rounding-sized jitter
    (:func:`run` adds it), as a dead channel's average does."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.live = torch.nn.Parameter(torch.zeros(40, dtype=torch.float64))
        self.other = torch.nn.Parameter(torch.zeros(30, dtype=torch.float64))
        self.dead = torch.nn.Parameter(torch.randn(60, generator=g, dtype=torch.float64))
        for name, n in (("live", 40), ("other", 30)):
            self.register_buffer(f"{name}_loading", 0.2 + torch.rand(n, generator=g).double())
            self.register_buffer(f"{name}_walk", torch.randint(0, 2, (n,), generator=g))

    def forward(self, walk: torch.Tensor) -> torch.Tensor:
        loss = 0.0 * self.dead.sum()  # a zero gradient: Adam leaves it where it is
        for name in ("live", "other"):
            target = getattr(self, f"{name}_loading") * walk[getattr(self, f"{name}_walk")]
            loss = loss + ((getattr(self, name) - target) ** 2).sum()
        return loss


BASE = STDETConfig(
    snapshot_every=1, snapshots=12, every=4, modes=6, samples=130, fraction=0.2,
    max_embedded=0.9, min_r2=0.0, keep_sensitive=0.0, variant="true", trajectory="raw",
    live_references=False, max_amplification=0.0, route_gradients=False,
)  # fmt: skip


def run(config: STDETConfig, steps: int, *, drift: float = 0.0, model=None, optimizer=None,
        stdet=None, seed: int = 0, walk=None):  # fmt: skip
    """``steps`` Adam steps on :class:`Walks`; the walks get a ``drift`` per step."""
    if model is None:
        model = Walks()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        stdet = STDET(model, optimizer, config)
    g = torch.Generator().manual_seed(seed)
    walk = torch.zeros(2, dtype=torch.float64) if walk is None else walk
    rules = chain_of(stdet=stdet)
    for _ in range(steps):
        walk += 0.3 * torch.randn(2, generator=g, dtype=torch.float64) + drift
        optimizer.zero_grad()
        model(walk).backward()
        rules.after_backward()
        optimizer.step()
        with torch.no_grad():  # rounding-sized jitter, far below modes.STILL
            model.dead.mul_(1 + 1e-9 * torch.randn(60, generator=g, dtype=torch.float64))
        rules.after_step()
    return model, optimizer, stdet, walk


def test_live_references_never_pick_a_still_scalar():
    _, _, still, _ = run(BASE, BASE.warmup)
    _, _, live, _ = run(
        STDETConfig(**{**BASE.__dict__, "live_references": True}), BASE.warmup
    )  # fmt: skip
    dead = range(70, 130)  # the dead tensor's flat indices
    assert any(r in dead for r in still.modes.reference.tolist())  # CMD as coded wastes modes
    assert still.health()["still_references"] >= 1
    assert not any(r in dead for r in live.modes.reference.tolist())
    assert live.health()["still_references"] == 0
    # Still scalars still join a reference, with a flat line: embedding fixes them as constants.
    a, _ = live.modes.coefficients()
    assert a[70:].abs().max() < 1e-6


def test_the_leverage_bound_holds_at_every_event():
    config = STDETConfig(**{**BASE.__dict__, "live_references": True, "max_amplification": 1.5})
    model, optimizer, stdet, walk = run(config, BASE.warmup + 1)
    for _ in range(8):
        model, optimizer, stdet, walk = run(config, BASE.every, model=model, optimizer=optimizer,
                                            stdet=stdet, walk=walk)  # fmt: skip
        embedded = stdet.lines.kind != TRAINABLE
        per_mode = torch.zeros(stdet.modes.reference.numel(), dtype=torch.float64)
        per_mode.index_add_(0, stdet.modes.mode[embedded].long(), stdet.lines.a[embedded] ** 2)
        assert per_mode.max().sqrt() <= 1.5 + 1e-12
        assert stdet.health()["leverage_max"] == pytest.approx(float(per_mode.max().sqrt()))
    assert stdet.lines.counts()["true"] > 0


def test_extrapolation_and_drift_measure_from_each_scalars_own_event():
    model, _, stdet, _ = run(BASE, BASE.warmup + BASE.every)  # one event, just now
    health = stdet.health()
    assert health["embedded"] > 0
    assert health["extrapolation_max"] == 0.0  # the reference was just observed: inside its range
    assert health["embedded_drift"] == 0.0
    # Move one reference by hand two widths above its range: its members extrapolate by 2.
    m = 0
    reference = int(stdet.modes.reference[m])
    low, high = float(stdet.lines.records.low[0][m]), float(stdet.lines.records.high[0][m])
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    before = flat[reference].item()
    with torch.no_grad():
        target = [p for p in model.parameters()][stdet.embedding.tensor_of(reference)]
        offset = reference - stdet.offsets[stdet.embedding.tensor_of(reference)]
        target.view(-1)[offset] = high + 2 * (high - low)
    members = (stdet.lines.kind != TRAINABLE) & (stdet.modes.mode == m)
    assert members.any()
    extrapolation = stdet.extrapolation()
    assert torch.allclose(extrapolation[members], torch.tensor(2.0, dtype=torch.float64))
    assert torch.all(extrapolation[stdet.lines.kind == TRAINABLE] == 0)
    # Drift: ||a (r - r_e)|| over the embedded, relative to their values at embedding.
    embedded = stdet.lines.kind != TRAINABLE
    a, b = stdet.lines.a[embedded], stdet.lines.b[embedded]
    r_then = torch.stack(stdet.lines.records.reference)[0][stdet.modes.mode[embedded].long()]
    moved = torch.where(
        stdet.modes.mode[embedded] == m, a * (high + 2 * (high - low) - before), 0.0
    )
    expected = moved.norm() / (a * r_then + b).norm()
    assert stdet.health()["embedded_drift"] == pytest.approx(float(expected))


def test_release_brings_back_scalars_whose_reference_left_its_range():
    config = STDETConfig(**{**BASE.__dict__, "release_beyond": 0.5, "max_embedded": 0.5,
                            "fraction": 0.5, "variant": "dummy"})  # fmt: skip
    model, optimizer, stdet, walk = run(config, config.warmup + config.every)
    embedded_before = stdet.lines.kind != TRAINABLE
    assert embedded_before.any()
    # The walks drift steadily: the references leave the range their members were fitted on.
    released_any = False
    for _ in range(10):  # each call ends with an event
        before = stdet.lines.kind != TRAINABLE
        model, optimizer, stdet, walk = run(config, config.every, drift=0.5, model=model,
                                            optimizer=optimizer, stdet=stdet, walk=walk)  # fmt: skip
        released_any |= bool((before & (stdet.lines.kind == TRAINABLE)).any())
        # Right after an event nothing embedded lies beyond the bound, and the cap holds.
        assert stdet.extrapolation().max() <= 0.5
        assert stdet.health()["embedded"] <= 0.5 + 1e-12
    assert released_any
    # Released scalars left the embedding (their event index too); tensors are all back in order.
    assert torch.all((stdet.lines.records.of_scalar >= 0) == (stdet.lines.kind != TRAINABLE))
    held = [owner(q) for q in optimizer.param_groups[0]["params"]]
    assert held == [p for p in model.parameters() if any(p is q for q in held)]


def test_state_round_trip_with_release_and_routing_continues_bit_identically():
    config = STDETConfig(**{**BASE.__dict__, "release_beyond": 0.5, "max_embedded": 0.5,
                            "live_references": True, "max_amplification": 3.0,
                            "route_gradients": True})  # fmt: skip
    model, optimizer, stdet, walk = run(config, config.warmup + 3 * config.every, drift=0.3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "stdet": stdet.state_dict(), "walk": walk}, buffer)  # fmt: skip
    run(config, 2 * config.every, drift=0.3, model=model, optimizer=optimizer, stdet=stdet,
        walk=walk, seed=7)  # fmt: skip
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model = Walks()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    stdet = STDET(model, optimizer, config)
    model.load_state_dict(saved["model"])
    stdet.load_state_dict(saved["stdet"])
    optimizer.load_state_dict(saved["optimizer"])
    run(config, 2 * config.every, drift=0.3, model=model, optimizer=optimizer, stdet=stdet,
        walk=saved["walk"], seed=7)  # fmt: skip
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_amplification", -1.0, r"max_amplification must be in \[0, inf\), got -1.0"),
        ("release_beyond", float("nan"), "release_beyond"),
        ("live_references", 1, "live_references must be True or False"),
        ("route_gradients", "yes", "route_gradients must be True or False"),
    ],
)
def test_bad_stability_knobs_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        STDETConfig(**{field: value})
