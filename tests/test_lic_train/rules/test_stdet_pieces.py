"""STDET's pieces on hand-made numbers: the pure selection rules, the embedding table and the
optimizer edits (the whole rule is tested in test_stdet.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lic_train.rules.stdet import (  # noqa: E402
    DUMMY,
    TRAINABLE,
    TRUE,
    EmbeddingTable,
    selection,
)
from lic_train.rules.stdet import optimizer as edits  # noqa: E402


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


def test_optimizer_edits_zero_state_and_remove_a_parameter():
    w, v = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.Adam([w, v], lr=0.1)
    (w.sum() + v.sum()).backward()
    optimizer.step()
    edits.zero_state(optimizer, w, torch.tensor([1, 3]))
    assert optimizer.state[w]["exp_avg"].tolist()[1::2] == [0.0, 0.0]
    assert all(x != 0 for x in optimizer.state[w]["exp_avg"].tolist()[0::2])
    edits.remove_parameter(optimizer, v)
    assert [p for g in optimizer.param_groups for p in g["params"]] == [w]
    assert v not in optimizer.state and not v.requires_grad and v.grad is None
