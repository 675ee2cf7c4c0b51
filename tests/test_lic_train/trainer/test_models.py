"""lic_train.trainer.models: names, zoo qualities and their widths, the factorized-relu fix,
explicit widths (at most MAX_WIDTH), registry-only models, describe(), shapes-only builds (the real
model's names, shapes and dtypes in a few MB) and one clear ValueError per bad input."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import compressai.zoo  # noqa: E402
from compressai.models import FactorizedPrior, FactorizedPriorReLU  # noqa: E402

from lic_train.trainer.models import (  # noqa: E402
    MAX_WIDTH,
    build_model,
    describe,
    from_weights,
    model_names,
    model_spec,
    quality_range,
)

# (N, M) per zoo quality, as CompressAI 1.2.8 documents its zoo (cheng2020: M = N).
ZOO_WIDTHS = {
    "bmshj2018-factorized": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "bmshj2018-factorized-relu": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "bmshj2018-hyperprior": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "mbt2018-mean": {q: (128, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
    "mbt2018": {q: (192, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
    "cheng2020-anchor": {q: (128, 128) if q <= 3 else (192, 192) for q in range(1, 7)},
    "cheng2020-attn": {q: (128, 128) if q <= 3 else (192, 192) for q in range(1, 7)},
}
ZOO_CLASSES = {
    "bmshj2018-factorized": "FactorizedPrior",
    "bmshj2018-factorized-relu": "FactorizedPriorReLU",
    "bmshj2018-hyperprior": "ScaleHyperprior",
    "mbt2018-mean": "MeanScaleHyperprior",
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
    "cheng2020-anchor": "Cheng2020Anchor",
    "cheng2020-attn": "Cheng2020Attention",
}
VBR = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr", "mbt2018-vbr")
REGISTRY_ONLY = ("cheng2020-anchor-checkerboard", "elic2022-chandelier", "elic2022-official")


def test_model_names_are_the_zoo_image_models_and_the_registry_only_image_models():
    names = model_names()
    assert names == sorted(names)
    assert set(compressai.zoo.image_models) <= set(names)
    assert set(names) == set(ZOO_WIDTHS) | set(VBR) | set(REGISTRY_ONLY)
    assert "ssf2020" not in names  # video
    assert not any("pcc" in name for name in names)  # point clouds


def test_quality_range_per_family():
    for name, widths in ZOO_WIDTHS.items():
        assert quality_range(name) == (min(widths), max(widths))
    assert quality_range("cheng2020-attn") == (1, 6)
    for name in VBR + REGISTRY_ONLY:
        assert quality_range(name) is None


@pytest.mark.parametrize("name", sorted(ZOO_WIDTHS))
def test_every_quality_resolves_to_the_documented_widths(name):
    # Resolution only: building 8 full-size models per name would dominate the suite's run time.
    for quality, (n, m) in ZOO_WIDTHS[name].items():
        cls, kwargs = model_spec(name, quality=quality)
        assert cls.__name__ == ZOO_CLASSES[name]
        assert kwargs == ({"N": n} if name.startswith("cheng2020") else {"N": n, "M": m})


def test_every_zoo_name_builds_at_quality_1_with_the_documented_widths():
    for name, widths in ZOO_WIDTHS.items():
        model = build_model(name, quality=1)
        n, m = widths[1]
        assert describe(model) == {"class": ZOO_CLASSES[name], "N": n, "M": m}
    vbr_classes = ("ScaleHyperpriorVbr", "MeanScaleHyperpriorVbr")
    vbr_classes += ("JointAutoregressiveHierarchicalPriorsVbr",)
    for name, cls in zip(VBR, vbr_classes, strict=True):  # one configuration, no quality
        assert describe(build_model(name)) == {"class": cls, "N": 192, "M": 320}


@pytest.mark.parametrize(
    ("name", "quality", "expected"),
    [
        ("bmshj2018-hyperprior", 1, (128, 192)),
        ("bmshj2018-hyperprior", 6, (192, 320)),
        ("mbt2018-mean", 5, (192, 320)),
        ("cheng2020-anchor", 4, (192, 192)),
    ],
)
def test_built_model_has_the_zoo_widths(name, quality, expected):
    model = build_model(name, quality=quality)
    info = describe(model)
    assert (info["N"], info["M"]) == expected
    # The weights agree with the description: g_a's first conv outputs N channels.
    first_conv = next(m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == expected[0]


def test_factorized_relu_builds_the_relu_class_unlike_the_zoo_function():
    model = build_model("bmshj2018-factorized-relu", quality=2)
    assert type(model) is FactorizedPriorReLU
    assert not any("GDN" in type(m).__name__ for m in model.modules())
    # The bug being worked around (CompressAI 1.2.8): if this starts failing, CompressAI fixed it.
    assert type(compressai.zoo.bmshj2018_factorized_relu(quality=2)) is FactorizedPrior


def test_explicit_widths_build_the_same_architecture_narrower():
    small = build_model("bmshj2018-hyperprior", N=8, M=12)
    assert describe(small) == {"class": "ScaleHyperprior", "N": 8, "M": 12}
    full = build_model("bmshj2018-hyperprior", quality=1)
    assert list(small.state_dict()) == list(full.state_dict())  # same layers, other widths
    assert sum(p.numel() for p in small.parameters()) < 30_000
    assert describe(build_model("cheng2020-attn", N=12, M=12)) == {
        "class": "Cheng2020Attention",
        "N": 12,
        "M": 12,
    }
    relu = build_model("bmshj2018-factorized-relu", N=8, M=12)
    assert type(relu) is FactorizedPriorReLU


def test_registry_only_models_by_name():
    elic = build_model("elic2022-official")
    assert describe(elic) == {"class": "Elic2022Official", "N": 192, "M": 320}
    assert elic.groups == [16, 16, 32, 64, 192]
    checkerboard = build_model("cheng2020-anchor-checkerboard", N=16, M=16)
    assert describe(checkerboard) == {"class": "Cheng2020AnchorCheckerboard", "N": 16, "M": 16}
    small_elic = build_model("elic2022-chandelier", N=8, M=136)
    assert describe(small_elic) == {"class": "Elic2022Chandelier", "N": 8, "M": 136}


def test_describe_unwraps_data_parallel_and_reads_the_weights():
    model = build_model("mbt2018-mean", N=8, M=12)
    assert describe(torch.nn.DataParallel(model)) == describe(model)
    del model.N, model.M  # the attributes are not needed: the widths come from g_a's weights
    assert describe(model) == {"class": "MeanScaleHyperprior", "N": 8, "M": 12}
    assert describe(torch.nn.Linear(2, 3)) == {"class": "Linear", "N": None, "M": None}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bmshj2018-hyperprio", "quality": 1}, r"nearest: bmshj2018-hyperprior(,|$)"),
        ({"name": "elic", "N": 8, "M": 136}, r"got 'elic'.*(nearest|known): .*elic2022"),
        ({"name": "ssf2020"}, r"not an image model"),
        ({"name": "bmshj2018-hyperprior", "quality": 0}, r"quality .*\[1, 8\].*got 0$"),
        ({"name": "bmshj2018-hyperprior", "quality": 9}, r"quality .*\[1, 8\].*got 9$"),
        ({"name": "cheng2020-anchor", "quality": 7}, r"quality .*\[1, 6\].*got 7$"),
        ({"name": "bmshj2018-hyperprior", "quality": 2.5}, r"quality .*got 2\.5$"),
        ({"name": "bmshj2018-hyperprior", "quality": True}, r"quality .*got True$"),
        ({"name": "elic2022-official", "quality": 3}, r"quality must be None.*registry-only"),
        ({"name": "mbt2018-vbr", "quality": 3}, r"quality must be None.*variable-rate"),
        ({"name": "bmshj2018-hyperprior", "N": 8}, r"^M missing: N and M are given together"),
        ({"name": "bmshj2018-hyperprior", "M": 8}, r"^N missing: N and M are given together"),
        ({"name": "bmshj2018-hyperprior", "N": 0, "M": 8}, r"^N must be an integer .*got 0$"),
        ({"name": "bmshj2018-hyperprior", "N": 8, "M": -1}, r"^M must be an integer .*got -1$"),
        ({"name": "mbt2018", "N": 2**14 + 1, "M": 8}, r"^N must be an integer in \[1, 16384\]"),
        ({"name": "mbt2018", "N": 8, "M": 10**9}, r"^M must be an integer in \[1, 16384\]"),
        ({"name": "bmshj2018-hyperprior", "quality": 1, "N": 8, "M": 8}, r"not both"),
        ({"name": "bmshj2018-hyperprior"}, r"quality must be .*\[1, 8\].*or give N and M"),
        ({"name": "cheng2020-anchor", "N": 8, "M": 12}, r"M must equal N"),
        ({"name": "elic2022-official", "N": 8, "M": 12}, r"M must be at least 129"),
    ],
)
def test_bad_input_raises_one_line_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        build_model(**kwargs)
    assert "\n" not in str(info.value)


def test_quality_range_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"nearest: mbt2018-mean"):
        quality_range("mbt2018-maen")


def shapes(model: torch.nn.Module) -> dict:
    return {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}


@pytest.mark.parametrize("name", model_names())
def test_a_shapes_only_build_has_the_real_models_names_shapes_and_dtypes(name):
    widths = {"N": 16, "M": 136} if name.startswith("elic") else {"N": 16, "M": 16}
    rng = torch.get_rng_state()
    shaped = build_model(name, **widths, shapes_only=True)
    assert torch.equal(torch.get_rng_state(), rng)  # the random state is left as it was
    assert shapes(shaped) == shapes(build_model(name, **widths))
    assert all(t.is_meta for t in shaped.state_dict().values() if t.numel() > 4096)
    assert describe(shaped) == describe(build_model(name, **widths))


def test_a_shapes_only_build_at_the_widest_width_is_fast_and_small():
    import time

    for name in model_names():
        start = time.perf_counter()
        model = build_model(name, N=MAX_WIDTH, M=MAX_WIDTH, shapes_only=True)
        assert time.perf_counter() - start < 1.0, name
        # Only small and per-channel tensors are real; built for real, the 16384-wide
        # convolutions alone would need hundreds of GB.
        real = [t for t in model.state_dict().values() if not t.is_meta]
        assert sum(t.numel() * t.element_size() for t in real) < 16 * 2**20, name


def test_from_weights_shapes_only_reads_the_widths_of_meta_weights():
    real = build_model("mbt2018-mean", N=16, M=24)
    weights = {name: t.to("meta") for name, t in real.state_dict().items()}
    shaped = from_weights("mbt2018-mean", weights, shapes_only=True)
    assert describe(shaped) == {"class": "MeanScaleHyperprior", "N": 16, "M": 24}
    assert shapes(shaped) == shapes(real)
