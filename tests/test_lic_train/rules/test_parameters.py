"""Which parameters the update rules act on: everything but the entropy bottleneck's quantiles, with
no DDP/DataParallel prefix."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lic_train.rules.parameters import (  # noqa: E402
    is_quantiles,
    named_parameters,
    network_parameters,
    unwrap,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("entropy_bottleneck.quantiles", True),
        ("quantiles", True),
        ("h_a.0.weight", False),
        ("entropy_bottleneck.quantiles_scale", False),
        ("my_quantiles", False),
    ],
)
def test_is_quantiles(name, expected):
    assert is_quantiles(name) is expected


def test_network_parameters_of_a_hyperprior_split_like_compressai():
    from compressai.models import ScaleHyperprior
    from compressai.optimizers import net_aux_optimizer

    model = ScaleHyperprior(8, 12)
    ours = {name for name, _ in network_parameters(model)}
    everything = {name for name, _ in named_parameters(model)}
    assert everything - ours == {"entropy_bottleneck.quantiles"}
    optimizers = net_aux_optimizer(
        model, {"net": {"type": "Adam", "lr": 1e-4}, "aux": {"type": "Adam", "lr": 1e-3}}
    )
    net_ids = {id(p) for group in optimizers["net"].param_groups for p in group["params"]}
    assert net_ids == {id(p) for _, p in network_parameters(model)}


def test_wrappers_are_unwrapped():
    inner = torch.nn.Linear(3, 2)
    wrapped = torch.nn.DataParallel(inner)
    assert unwrap(wrapped) is inner
    assert unwrap(inner) is inner
    assert [name for name, _ in named_parameters(wrapped)] == ["weight", "bias"]
