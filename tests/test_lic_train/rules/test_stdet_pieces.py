"""STDET's pieces on hand-made numbers: the pure selection rules, the embedding table, the frozen
lines, the health and the optimizer edits (the whole rule is tested in test_stdet.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lic_train.rules.stdet import (  # noqa: E402
    DUMMY,
    TRAINABLE,
    TRUE,
    EmbeddingTable,
    health,
    selection,
)
from lic_train.rules.stdet import optimizer as edits  # noqa: E402
from lic_train.rules.stdet.lines import FrozenLines  # noqa: E402


def numbers(n: int = 8):
    drift = torch.arange(n, dtype=torch.float64)  # scalar i drifted by i
    r2 = torch.ones(n, dtype=torch.float64)
    embedded = torch.zeros(n, dtype=torch.bool)
    sensitivity = torch.arange(n, 0, -1, dtype=torch.float64)  # scalar 0 the most sensitive
    return drift, r2, embedded, sensitivity


def test_steadiest_scalars_skip_references_bad_fits_and_embedded_then_keep_the_sensitive():
    drift, r2, embedded, sensitivity = numbers()
    r2[1] = 0.1
    embedded[2] = True
    common = {"references": torch.tensor([0]), "min_r2": 0.5, "sensitivity": sensitivity}
    steady = selection.steadiest_scalars(drift, r2, embedded, budget=3, keep_sensitive=0.0,
                                         **common)  # fmt: skip
    assert sorted(steady.tolist()) == [3, 4, 5]
    kept = selection.steadiest_scalars(drift, r2, embedded, budget=3, keep_sensitive=0.34,
                                       **common)  # fmt: skip
    assert sorted(kept.tolist()) == [4, 5]  # 3, the most sensitive of the three, stays trainable


def test_steadiest_tensors_take_whole_tensors_that_fit_and_hold_no_reference():
    drift, r2, embedded, sensitivity = numbers()
    offsets = [0, 2, 5, 8]  # tensors of 2, 3 and 3 scalars
    steady = selection.steadiest_tensors(
        drift, r2, embedded, offsets=offsets, holding_references={0}, budget=4, min_r2=0.5,
        keep_sensitive=0.0, sensitivity=sensitivity,
    )  # fmt: skip
    assert steady.tolist() == [2, 3, 4]  # tensor 1 (mean drift 3) fits; tensor 2 no longer does


def test_kinds_by_variant():
    steady = torch.tensor([1, 2, 3, 4])
    sensitivity = torch.tensor([0.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    for variant, kind in (("true", TRUE), ("dummy", DUMMY)):
        got = selection.kinds(steady, sensitivity, size=5, variant=variant, quantile=0.5)
        assert got.tolist() == [TRAINABLE, kind, kind, kind, kind]
    got = selection.kinds(steady, sensitivity, size=5, variant="sensitivity", quantile=0.5)
    assert got.tolist() == [TRAINABLE, DUMMY, DUMMY, TRUE, TRUE]  # the least sensitive true


def test_the_table_ties_members_zeroes_their_gradient_and_reports_whole_tensors():
    w = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
    v = torch.nn.Parameter(torch.zeros(2))
    table = EmbeddingTable([w, v])
    table.set_references([0])  # w[0, 0]
    kind = torch.tensor([0, 1, 0, 0, 2, 0, 1, 2], dtype=torch.uint8)
    a = torch.full((8,), 2.0, dtype=torch.float64)
    b = torch.arange(8, dtype=torch.float64)
    whole = table.set(kind, a, b, torch.zeros(8, dtype=torch.long))
    assert whole == [1]  # v is embedded whole
    w.grad, v.grad = torch.ones_like(w), None
    table.after_backward()
    assert w.grad.reshape(-1).tolist() == [1, 0, 1, 1, 0, 1]
    with torch.no_grad():
        w[0, 0] = 10.0
    table.after_step()
    assert w.detach().reshape(-1).tolist() == [10.0, 21.0, 2.0, 3.0, 24.0, 5.0]
    assert v.detach().tolist() == [26.0, 27.0]
    assert table.state_dict() == {}


def test_routed_gradient_is_the_least_squares_step_of_the_mode():
    """With route_gradients, the reference's gradient is (g_r + sum a_i g_i) / (1 + sum a_i^2)
    over its members in autograd, the members' own gradients are zeroed, and a tensor embedded
    whole (no gradient) is not counted."""
    w = torch.nn.Parameter(torch.zeros(2, 3))
    v = torch.nn.Parameter(torch.zeros(2))
    table = EmbeddingTable([w, v], route_gradients=True)
    table.set_references([0, 2])  # w[0, 0] and w[0, 2]
    kind = torch.tensor([0, 1, 0, 1, 2, 0, 1, 1], dtype=torch.uint8)
    a = torch.tensor([1.0, 2.0, 1.0, -1.0, 3.0, 0.0, 5.0, 5.0], dtype=torch.float64)
    mode = torch.tensor([0, 0, 1, 1, 0, 1, 0, 0])
    assert table.set(kind, a, torch.zeros(8, dtype=torch.float64), mode) == [1]
    w.grad = torch.tensor([[0.5, 1.0, 2.0], [4.0, 8.0, 16.0]])
    table.after_backward()
    # mode 0: members 1 (a 2, g 1) and 4 (a 3, g 8); mode 1: member 3 (a -1, g 4)
    expected_0 = (0.5 + 2 * 1.0 + 3 * 8.0) / (1 + 4 + 9)
    expected_1 = (2.0 - 4.0) / (1 + 1)
    torch.testing.assert_close(w.grad[0, 0], torch.tensor(expected_0))
    torch.testing.assert_close(w.grad[0, 2], torch.tensor(expected_1))
    assert w.grad.reshape(-1)[[1, 3, 4]].tolist() == [0.0, 0.0, 0.0]
    assert w.grad[1, 2].item() == 16.0  # trainable, untouched


def test_leverage_keeps_each_modes_steadiest_prefix_within_the_bound():
    a = torch.tensor([1.0, 2.0, 2.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    mode = torch.tensor([0, 0, 0, 1, 1, 1])
    carried = torch.tensor([0.0, 4.0], dtype=torch.float64)  # mode 1 carries sum a^2 = 4 already
    lever = selection.Leverage(a, mode, carried, bound=3.0)
    # mode 0 in order 0, 1, 2: 1, 5, 9 <= 9; mode 1 in order 4, 3, 5: 4 + 9 > 9 stops the prefix
    assert lever.within(torch.tensor([0, 4, 1, 3, 2, 5])).tolist() == [0, 1, 2]
    drift = torch.tensor([0.1, 0.2, 0.3, 0.0, 0.0, 0.0])
    steady = selection.steadiest_scalars(
        drift, torch.ones(6), torch.zeros(6, dtype=torch.bool), references=torch.tensor([3]),
        budget=6, min_r2=0.5, keep_sensitive=0.0, sensitivity=torch.zeros(6), leverage=lever,
    )  # fmt: skip
    # by drift: 4 (9 + 4 > 9, and the prefix of mode 1 ends there), then 0, 1, 2 of mode 0
    assert sorted(steady.tolist()) == [0, 1, 2]


def adam_pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    first = [torch.nn.Parameter(torch.randn(3, 4, generator=g)) for _ in range(3)]
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    return first, torch.optim.Adam(first, lr=0.1), second, torch.optim.Adam(second, lr=0.1)


def adam_steps(params, optimizer, steps, g, frozen=None):
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        if frozen is not None:  # the embedding table's work: no gradient for embedded scalars
            for p, mask in zip(params, frozen, strict=True):
                p.grad[mask] = 0.0
        optimizer.step()


def test_packed_state_trains_the_trainable_scalars_bit_for_bit_as_zeroed_state():
    """Adam holding a proxy of the trainable scalars steps them exactly as Adam on the whole
    tensor with the embedded entries' state zeroed and their gradients zero (what STDET did
    before packing), and holds two moments per trainable scalar only."""
    packed, packed_adam, full, full_adam = adam_pair()
    adam_steps(packed, packed_adam, 3, torch.Generator().manual_seed(1))
    adam_steps(full, full_adam, 3, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    embedded = [torch.rand(3, 4, generator=g) < 0.6 for _ in range(3)]
    embedded[2][:] = True  # a tensor embedded whole
    packing = edits.Packing(packed_adam, packed)
    for p, q, mask in zip(packed, full, embedded, strict=True):
        packing.set(p, ~mask.reshape(-1), released=None)
        for value in full_adam.state[q].values():
            if value.shape == q.shape:
                value[mask] = 0.0
    held = packed_adam.param_groups[0]["params"]
    assert [edits.owner(q) for q in held] == packed[:2] and packed[2].requires_grad is False
    assert packed_adam.state[held[0]]["exp_avg"].numel() == int((~embedded[0]).sum())
    whole_before = packed[2].detach().clone()
    adam_steps(packed, packed_adam, 4, torch.Generator().manual_seed(3), frozen=embedded)
    adam_steps(full, full_adam, 4, torch.Generator().manual_seed(3), frozen=embedded)
    for p, q, mask in zip(packed[:2], full[:2], embedded[:2], strict=True):
        assert torch.equal(p.detach()[~mask], q.detach()[~mask])
        assert torch.equal(p.detach()[mask], q.detach()[mask])  # untouched: zero state, zero grad
        assert p.grad is None  # the full gradient is dropped after the step
    assert torch.equal(packed[2].detach(), whole_before)  # out of the optimizer: never stepped
    # The optimizer's state in the model's layout: packed entries unpacked, zero where embedded.
    state = edits.unpacked(held[0], packed_adam.state[held[0]]["exp_avg_sq"])
    assert torch.equal(state, full_adam.state[full[0]]["exp_avg_sq"])


def test_release_and_return_keep_each_parameters_place_and_give_a_typical_state():
    params, adam, _, _ = adam_pair()
    adam_steps(params, adam, 2, torch.Generator().manual_seed(1))
    packing = edits.Packing(adam, params)
    everything = torch.ones(12, dtype=torch.bool)
    packing.set(params[0], ~everything, released=None)  # out
    packing.set(params[1], everything.clone().index_fill_(0, torch.tensor([0, 1]), False), None)
    assert [edits.owner(q) for q in adam.param_groups[0]["params"]] == params[1:]
    packing.set(params[0], everything, released=None)  # back, at its first place, fresh state
    held = adam.param_groups[0]["params"]
    assert [edits.owner(q) for q in held] == params and params[0] not in adam.state
    released = torch.zeros(12, dtype=torch.bool)
    released[1] = True
    trained_sq = edits.unpacked(held[1], adam.state[held[1]]["exp_avg_sq"]).reshape(-1)[2:]
    packing.set(params[1], everything.clone().index_fill_(0, torch.tensor([0]), False), released)
    state = adam.state[adam.param_groups[0]["params"][1]]
    assert state["exp_avg_sq"][0] == trained_sq.median() and state["exp_avg"][0] == 0.0
    assert state["exp_avg_sq"].numel() == 11
    with pytest.raises(ValueError, match="none of the optimizer"):
        packing.set(torch.nn.Parameter(torch.ones(1)), torch.ones(1, dtype=torch.bool), None)
    fresh = torch.optim.Adam(params, lr=0.1)
    with pytest.raises(ValueError, match="1 of the tracked parameters are in none"):
        edits.Packing(fresh, [*params, torch.nn.Parameter(torch.ones(1))])


def test_hold_sets_only_the_tensors_whose_trainable_set_changed():
    params, adam, _, _ = adam_pair()
    packing = edits.Packing(adam, params)
    offsets = [0, 12, 24, 36]
    trainable = torch.ones(36, dtype=torch.bool)
    trainable[12:24] = False  # the second tensor embedded whole
    trainable[30] = False  # one scalar of the third
    packing.hold(trainable, offsets, released=None)
    assert packing.held == [12, 0, 11] and packing.removed == {1}
    held = adam.param_groups[0]["params"]
    assert held[0] is params[0] and edits.owner(held[1]) is params[2]
    proxy = held[1]
    packing.hold(trainable, offsets, released=None)  # nothing changed: the same proxy stays
    assert adam.param_groups[0]["params"][1] is proxy
    released = torch.zeros(36, dtype=torch.bool)
    released[12:24] = True
    packing.hold(torch.ones(36, dtype=torch.bool), offsets, released)
    assert packing.held == [12, 12, 12] and not packing.removed
    assert [edits.owner(q) for q in adam.param_groups[0]["params"]] == params


def test_frozen_lines_embed_release_count_and_round_trip():
    lines = FrozenLines(size=6, device="cpu")
    record = lines.records.add(torch.tensor([1.0, 2.0]), torch.zeros(2), torch.ones(2) * 3)
    kind = torch.tensor([TRUE, 0, DUMMY, DUMMY, 0, 0], dtype=torch.uint8)
    a = torch.tensor([1.0, 9.0, -2.0, 3.0, 9.0, 9.0], dtype=torch.float64)
    b = torch.arange(6, dtype=torch.float64)
    assert lines.embed(kind, a, b, record).tolist() == [True, False, True, True, False, False]
    assert lines.a.tolist() == [1.0, 0.0, -2.0, 3.0, 0.0, 0.0]  # only the chosen take a line
    assert lines.counts() == {"trainable": 3, "true": 1, "dummy": 2}
    mode = torch.tensor([0, 0, 1, 1, 0, 1], dtype=torch.int32)
    assert lines.leverage_squared(mode, 2).tolist() == [1.0, 4.0 + 9.0]
    copy = FrozenLines(size=6, device="cpu")
    copy.load_state_dict(lines.state_dict())
    assert torch.equal(copy.kind, lines.kind) and torch.equal(copy.b, lines.b)
    assert copy.count == 3 and len(copy.records.reference) == 1
    lines.release(torch.tensor([False, False, True, False, False, False]))
    assert lines.count == 2 and lines.leverage_squared(mode, 2).tolist() == [1.0, 9.0]


def test_health_measures_extrapolation_and_drift_from_the_event():
    """One reference observed in [0, 2] at its event (value 1 then); two members embedded on it,
    a = 1 and a = 2 with b = 1; the reference then moves to 5: 1.5 widths beyond its range, and
    the members moved by a * 4 from their values then (2 and 3)."""

    class Fitted:  # the few fields of Modes that health reads
        fitted = True
        reference = torch.tensor([0])
        mode = torch.tensor([0, 0, 0], dtype=torch.int32)
        low, high = (
            torch.tensor([0.0], dtype=torch.float64),
            torch.tensor([2.0], dtype=torch.float64),
        )

    lines = FrozenLines(size=3, device="cpu")
    record = lines.records.add(torch.tensor([1.0]), Fitted.low, Fitted.high)
    kind = torch.tensor([0, TRUE, TRUE], dtype=torch.uint8)
    a = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    lines.embed(kind, a, torch.ones(3, dtype=torch.float64), record)
    now = torch.tensor([5.0], dtype=torch.float64)
    assert health.extrapolation(lines, Fitted, now).tolist() == [0.0, 1.5, 1.5]
    report = health.health(lines, Fitted, now)
    assert report["extrapolation_max"] == 1.5 and report["embedded"] == 2 / 3
    assert report["leverage_max"] == pytest.approx(5**0.5)
    assert report["embedded_drift"] == pytest.approx((16 + 64) ** 0.5 / (4 + 9) ** 0.5)
    assert health.extrapolation(lines, Fitted, torch.tensor([1.5], dtype=torch.float64)).max() == 0
