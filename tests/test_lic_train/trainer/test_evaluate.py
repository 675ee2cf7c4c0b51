"""lic_train.trainer.evaluate: real bpp from the bytes, centred padding, 8-bit PSNR and MS-SSIM as
eval_model computes them, the estimated rate, the caller's model left alone, and the JSON schema.

The reference values are recomputed independently: padding by slicing (not compute_padding),
bytes by eval_model's own formula, PSNR in NumPy."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lic_train.trainer.evaluate import (  # noqa: E402
    EVAL_MODEL_KEYS,
    EvalResult,
    ImageResult,
    eval_model_json,
    evaluate,
    merge_eval_json,
    ms_ssim_8bit,
    psnr_8bit,
)
from lic_train.trainer.models import build_model  # noqa: E402


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """A random hyperprior model, N=8, M=12, whose latents carry about 1 bpp."""
    torch.manual_seed(seed)
    model = build_model("bmshj2018-hyperprior", N=8, M=12)
    with torch.no_grad():
        # At initialisation almost every latent rounds to 0 (about 0.03 bpp), so the bytes
        # hardly depend on the image; amplified, they do (and a wrong padding shows).
        model.g_a[-1].weight.mul_(30)
    return model


def image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    """A smooth random RGB image in [0, 1], (3, H, W), quantised to 8 bit as ToTensor gives."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0]
    return (smooth * 255).round() / 255


def independent_coding(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """eval_model's real bpp and the decoded image, with the centred zero padding done by hand."""
    net = copy.deepcopy(model).eval()
    net.update(force=True)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % 64, -width % 64
    top, left = pad_h // 2, pad_w // 2
    padded = torch.zeros(1, 3, height + pad_h, width + pad_w)
    padded[0, :, top : top + height, left : left + width] = x
    with torch.no_grad():
        encoded = net.compress(padded)
        decoded = net.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    bpp = sum(len(s[0]) for s in encoded["strings"]) * 8.0 / (height * width)
    return bpp, decoded[0, :, top : top + height, left : left + width].clamp(0, 1)


def numpy_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    a = np.round(np.clip(x.numpy() * 255, 0, 255)).astype(np.float64)
    b = np.round(np.clip(y.numpy() * 255, 0, 255)).astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def model_and_result():
    model = tiny_model()
    images = [("small", image(64, 96)), ("odd", image(70, 100, seed=2)), ("big", image(192, 200))]
    return model, images, evaluate(model, images)


def test_real_bpp_and_psnr_equal_an_independent_computation(model_and_result):
    model, images, result = model_and_result
    assert [r.name for r in result.images] == ["small", "odd", "big"]
    for (_, x), r in zip(images, result.images, strict=True):
        bpp, x_hat = independent_coding(model, x)
        assert r.bpp == pytest.approx(bpp, rel=1e-12)
        assert r.bpp > 0
        assert r.psnr == pytest.approx(numpy_psnr(x, x_hat), rel=1e-12)
        assert (r.height, r.width) == tuple(x.shape[-2:])
        assert r.encoding_time > 0 and r.decoding_time > 0


def test_real_bpp_counts_every_string_of_a_checkerboard_model():
    torch.manual_seed(0)
    model = build_model("cheng2020-anchor-checkerboard", N=8, M=8)  # 3 strings: y twice, z
    x = image(64, 96)
    result = evaluate(model, [("x", x)])
    assert result.images[0].bpp == pytest.approx(independent_coding(model, x)[0], rel=1e-12)


def test_padding_to_64_for_sizes_that_are_not_multiples(model_and_result):
    _, _, result = model_and_result
    odd = result.images[1]
    assert (odd.height, odd.width) == (70, 100)
    # The bytes of a 128x128 padded image over 70*100 pixels: a multiple of 8/7000.
    assert (odd.bpp * 70 * 100 / 8) == pytest.approx(round(odd.bpp * 70 * 100 / 8), abs=1e-9)
    assert math.isfinite(odd.psnr)


def test_estimated_bpp_is_forward_likelihoods_over_the_original_pixels(model_and_result):
    model, images, result = model_and_result
    net = copy.deepcopy(model).eval()
    _, x = images[1]
    padded = torch.nn.functional.pad(x[None], (14, 14, 29, 29))  # 70x100 -> 128x128, centred
    with torch.no_grad():
        likelihoods = net(padded)["likelihoods"]
    bits = sum(-torch.log2(lk.double()).sum().item() for lk in likelihoods.values())
    assert result.images[1].bpp_estimated == pytest.approx(bits / (70 * 100), rel=1e-9)
    for r in result.images:
        assert math.isfinite(r.bpp_estimated) and r.bpp_estimated > 0


def test_ms_ssim_only_where_the_smaller_side_exceeds_160(model_and_result):
    _, _, result = model_and_result
    assert result.images[0].ms_ssim is None  # 64x96
    assert result.images[1].ms_ssim is None  # 70x100
    big = result.images[2].ms_ssim  # 192x200
    assert isinstance(big, float) and 0 <= big <= 1
    x = image(161, 170)
    assert ms_ssim_8bit(x, x) == pytest.approx(1.0)
    assert ms_ssim_8bit(x[:, :160], x[:, :160]) is None
    assert ms_ssim_8bit(x, (x + 0.2).clamp(0, 1)) < 1


def test_decoding_is_deterministic(model_and_result):
    model, images, result = model_and_result
    again = evaluate(model, images)
    for first, second in zip(result.images, again.images, strict=True):
        assert (first.bpp, first.psnr, first.ms_ssim, first.bpp_estimated) == (
            second.bpp,
            second.psnr,
            second.ms_ssim,
            second.bpp_estimated,
        )


def test_the_callers_model_is_left_alone():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate(model, [("x", image(64, 64))], device=torch.device("cpu"))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert model.training  # still in training mode
    assert model.entropy_bottleneck._quantized_cdf.numel() == 0  # never update()d
    assert model.gaussian_conditional._quantized_cdf.numel() == 0


def test_stale_cdfs_are_rebuilt_on_the_copy():
    model = tiny_model()
    model.update(force=True)
    stale = model.entropy_bottleneck._quantized_cdf.clone()
    with torch.no_grad():  # training moved the factorized density: the CDFs are stale
        for name, p in model.entropy_bottleneck.named_parameters():
            if not name.endswith("quantiles"):
                p.add_(0.5)
    x = image(64, 64)
    result = evaluate(model, [("x", x)])
    assert result.images[0].bpp == pytest.approx(independent_coding(model, x)[0], rel=1e-12)
    assert torch.equal(model.entropy_bottleneck._quantized_cdf, stale)  # caller's kept


def test_coding_runs_on_one_thread_as_eval_model_and_the_count_is_restored(monkeypatch):
    """eval_model codes with torch.set_num_threads(1): so does evaluate, so that times compare."""
    model = tiny_model()
    seen = []
    compress = type(model).compress

    def counting(self, x):
        seen.append(torch.get_num_threads())
        return compress(self, x)

    monkeypatch.setattr(type(model), "compress", counting)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate(model, [("a", image(64, 64))])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_psnr_8bit_rounds_to_8_bit_first():
    x = torch.zeros(3, 4, 4)
    assert psnr_8bit(x, x) == math.inf
    assert psnr_8bit(x, x + 0.4 / 255) == math.inf  # rounds to the same 8-bit values
    y = x.clone()
    y[0, 0, 0] = 10 / 255  # one 8-bit error of 10 over 48 values: MSE = 100 / 48
    assert psnr_8bit(x, y) == pytest.approx(10 * math.log10(255**2 * 48 / 100), rel=1e-14)
    assert psnr_8bit(x, y + 0.3 / 255) == psnr_8bit(x, y)
    assert psnr_8bit(x, torch.full_like(x, 2.0)) == pytest.approx(0.0, abs=1e-12)  # clamped
    with pytest.raises(ValueError, match="shape"):
        psnr_8bit(x, x[:, :2])


def result_of(psnrs, ms_ssims) -> EvalResult:
    return EvalResult(
        [
            ImageResult(f"i{i}", 0.5 * i, 0.4 * i, p, s, 0.1, 0.2, 64, 64)
            for i, (p, s) in enumerate(zip(psnrs, ms_ssims, strict=True))
        ]
    )


def test_mean_is_per_image_and_ms_ssim_over_the_images_that_have_it():
    mean = result_of([30.0, 20.0, 40.0], [None, 0.9, 0.7]).mean()
    assert mean["psnr"] == pytest.approx(30.0)
    assert mean["ms_ssim"] == pytest.approx(0.8)
    assert mean["bpp"] == pytest.approx(0.5)
    assert mean["bpp_estimated"] == pytest.approx(0.4)
    assert result_of([30.0], [None]).mean()["ms_ssim"] is None
    with pytest.raises(ValueError, match="at least one image"):
        EvalResult([]).mean()


def test_eval_model_json_schema_and_strict_json_round_trip(model_and_result):
    _, _, result = model_and_result
    entry = eval_model_json("bmshj2018-hyperprior-mse", result)
    assert set(entry) == {"name", "description", "results"}
    assert entry["description"] == "Inference (ans)"
    assert list(entry["results"]) == [*EVAL_MODEL_KEYS, "bpp-estimated"]
    assert all(isinstance(v, list) and len(v) == 1 for v in entry["results"].values())
    mean = result.mean()
    assert entry["results"]["bpp"] == [mean["bpp"]]
    assert entry["results"]["psnr-rgb"] == [mean["psnr"]]
    assert entry["results"]["ms-ssim-rgb"] == [result.images[2].ms_ssim]
    assert json.loads(json.dumps(entry, allow_nan=False)) == entry

    merged = merge_eval_json(
        [entry, eval_model_json("bmshj2018-hyperprior-mse", result_of([25.0], [None]))]
    )
    assert merged["results"]["psnr-rgb"] == [mean["psnr"], 25.0]
    assert merged["results"]["ms-ssim-rgb"] == [result.images[2].ms_ssim, None]
    assert all(len(v) == 2 for v in merged["results"].values())
    with pytest.raises(ValueError, match="name"):
        merge_eval_json([entry, eval_model_json("other", result)])


def test_lossless_psnr_is_written_as_null():
    entry = eval_model_json("x", result_of([math.inf], [None]))
    assert entry["results"]["psnr-rgb"] == [None]
    json.dumps(entry, allow_nan=False)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "non-empty"),
        ([("x", torch.rand(1, 3, 64, 64))], r"images\[0\] \(x\) must have shape \(3, H, W\)"),
        ([("x", torch.rand(3, 8, 8) * 2)], r"images\[0\] \(x\) must hold values in \[0, 1\]"),
        ([("x", torch.zeros(3, 8, 8, dtype=torch.uint8))], "floating-point"),
        ([torch.rand(3, 8, 8)], r"images\[0\] must be a \(name, tensor\) pair"),
    ],
)
def test_evaluate_rejects_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        evaluate(tiny_model(), images)


def test_evaluate_rejects_a_model_without_entropy_coding():
    with pytest.raises(ValueError, match="model must be a CompressAI model"):
        evaluate(torch.nn.Conv2d(3, 3, 1), [("x", image(64, 64))])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_on_cuda():
    result = evaluate(tiny_model(), [("x", image(64, 96))], device="cuda")
    assert result.images[0].bpp > 0 and math.isfinite(result.images[0].psnr)
