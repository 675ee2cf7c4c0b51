"""Real bit-stream evaluation of a CompressAI model, with the conventions of ``eval_model``.

The metrics follow ``compressai.utils.eval_model`` (CompressAI 1.2.8) so that the
numbers are comparable with CompressAI's published RD curves:

- each image is padded (centred, zeros) to a multiple of 64, coded at batch 1, and unpadded;
- bpp counts the bytes of every latent string (no header or shape bytes) over the original H·W;
- both images are converted to 8 bit (×255, clamp, round) before PSNR (RGB, dB) and MS-SSIM
  (``pytorch_msssim`` at data range 255, not in dB);
- metrics are averaged per image.

Departures, all additive: MS-SSIM is None where the smaller image side is <= 160 px (where
``pytorch_msssim`` fails and ``eval_model`` crashes); the entropy-model estimate of the rate
(``bpp_estimated``) is reported next to the real one; timings use ``time.perf_counter`` and
synchronise CUDA; coding runs on one CPU thread, as in ``eval_model``, so that times compare (the
caller's thread count is restored after). ``compressai.utils.eval_model`` is not imported:
importing it sets ``torch.set_num_threads(1)`` process-wide.

The caller's model is never modified: coding runs on a deep copy whose CDF tables are rebuilt
with ``update(force=True)`` (stale tables after training would silently cost rate).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from pytorch_msssim import ms_ssim
from torch import nn

from lic_train.rules.parameters import unwrap

# The analysis transforms of the zoo models downsample 6 times by 2 (eval_model pads to 2**6).
PAD_MULTIPLE = 64
# pytorch_msssim's MS-SSIM (5 scales, window 11) needs the smaller side > (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161
MAX_8BIT = 255

# Keys of an eval_model JSON entry's "results", in eval_model's order, then ours.
EVAL_MODEL_KEYS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time")
EXTRA_KEYS = ("bpp-estimated",)


@dataclass
class ImageResult:
    """Metrics of one image.

    Attributes:
        name: the image's name as given to :func:`evaluate`.
        bpp: real rate, bits per pixel: 8 × the bytes of every latent string / (H·W).
        bpp_estimated: rate the entropy models predict, bits per pixel: −Σ log2(likelihoods) of
            ``forward`` on the padded image (eval mode, so no quantisation noise) / (H·W).
        psnr: dB, RGB, on the 8-bit images; ``math.inf`` for a lossless reconstruction.
        ms_ssim: MS-SSIM in [0, 1] (not dB) on the 8-bit images; None when min(H, W) <= 160.
        encoding_time, decoding_time: seconds of ``compress`` and ``decompress``.
        height, width: of the original image, pixels.
    """

    name: str
    bpp: float
    bpp_estimated: float
    psnr: float
    ms_ssim: float | None
    encoding_time: float
    decoding_time: float
    height: int
    width: int


@dataclass
class EvalResult:
    """The per-image results of one :func:`evaluate` call, in the order of its images."""

    images: list[ImageResult]

    def mean(self) -> dict[str, float | None]:
        """Per-image averages: ``bpp``, ``bpp_estimated``, ``psnr``, ``ms_ssim``,
        ``encoding_time``, ``decoding_time``. ``ms_ssim`` averages the images that have it and
        is None when none has; ``psnr`` is inf when an image was reconstructed losslessly."""
        if not self.images:
            raise ValueError("EvalResult.images must hold at least one image, got an empty list")
        means: dict[str, float | None] = {}
        for key in ("bpp", "bpp_estimated", "psnr", "ms_ssim", "encoding_time", "decoding_time"):
            values = [getattr(r, key) for r in self.images if getattr(r, key) is not None]
            means[key] = math.fsum(values) / len(values) if values else None
        return means


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Image(s) in [0, 1] as the 8-bit values eval_model measures: ×255, clamp, round (half to
    even), in the input's dtype (so rounding matches eval_model bit for bit)."""
    return (x * MAX_8BIT).clamp(0, MAX_8BIT).round()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape != y.shape:
        raise ValueError(f"y must have the shape of x, {tuple(x.shape)}, got {tuple(y.shape)}")


def psnr_8bit(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (any equal shapes), after converting both to 8 bit as
    eval_model does: 20·log10(255) − 10·log10(MSE). ``math.inf`` when the 8-bit images are equal.
    The MSE is computed in float64 (exact for 8-bit values)."""
    _check_pair(x, y)
    mse = (to_8bit(x).double() - to_8bit(y).double()).pow(2).mean().item()
    if mse == 0.0:
        return math.inf
    return 20 * math.log10(MAX_8BIT) - 10 * math.log10(mse)


def ms_ssim_8bit(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """MS-SSIM (``pytorch_msssim``, data range 255, in [0, 1], not dB) of two images in [0, 1],
    shape (3, H, W) or (B, 3, H, W), after converting both to 8 bit; None when min(H, W) <= 160,
    where the five-scale pyramid does not fit."""
    _check_pair(x, y)
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    return float(ms_ssim(to_8bit(x), to_8bit(y), data_range=MAX_8BIT).item())


def _string_bytes(strings: object) -> int:
    """Total length of the (arbitrarily nested) byte strings that ``compress`` returns: one list
    per latent for the zoo models, one per channel group and checkerboard half for ELIC."""
    if isinstance(strings, bytes | bytearray):
        return len(strings)
    if isinstance(strings, list | tuple):
        return sum(_string_bytes(s) for s in strings)
    raise ValueError(f"compress() returned a string of type {type(strings).__name__}, not bytes")


def _likelihood_tensors(likelihoods: object) -> Iterator[torch.Tensor]:
    if isinstance(likelihoods, torch.Tensor):
        yield likelihoods
    elif isinstance(likelihoods, dict):
        for value in likelihoods.values():
            yield from _likelihood_tensors(value)
    elif isinstance(likelihoods, list | tuple):
        for value in likelihoods:
            yield from _likelihood_tensors(value)


def _check_image(index: int, item: object) -> tuple[str, torch.Tensor]:
    where = f"images[{index}]"
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise ValueError(f"{where} must be a (name, tensor) pair, got {type(item).__name__}")
    name, image = item
    if not isinstance(name, str):
        raise ValueError(f"{where} name must be a string, got {name!r}")
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise ValueError(f"{where} ({name}) must be a floating-point tensor, got {image!r:.60}")
    if image.dim() != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise ValueError(f"{where} ({name}) must have shape (3, H, W), got {tuple(image.shape)}")
    low, high = image.min().item(), image.max().item()
    if not (0.0 <= low and high <= 1.0):  # also False for NaN
        raise ValueError(f"{where} ({name}) must hold values in [0, 1], got [{low}, {high}]")
    return name, image


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """One CPU thread for the duration (restored after), as ``eval_model`` codes (it sets
    ``torch.set_num_threads(1)``), so that coding times compare with CompressAI's."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _deterministic_cudnn(device: torch.device) -> Iterator[None]:
    """On CUDA, deterministic cuDNN for the duration (restored after): the decoder must
    recompute the encoder's entropy parameters bit for bit, or decoding is corrupted
    (CompressAI #279, #320; eval_model sets this process-wide)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _code_image(
    net: nn.Module, name: str, image: torch.Tensor, device: torch.device
) -> ImageResult:
    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x = image.to(device, torch.float32).unsqueeze(0)
    height, width = x.shape[-2:]
    pad, unpad = compute_padding(height, width, min_div=PAD_MULTIPLE)
    x_padded = F.pad(x, pad, mode="constant", value=0)
    pixels = height * width

    synchronize()
    start = time.perf_counter()
    encoded = net.compress(x_padded)
    synchronize()
    encoding_time = time.perf_counter() - start

    start = time.perf_counter()
    decoded = net.decompress(encoded["strings"], encoded["shape"])
    synchronize()
    decoding_time = time.perf_counter() - start

    x_hat = F.pad(decoded["x_hat"], unpad).clamp(0, 1)
    bits = 8 * _string_bytes(encoded["strings"])

    likelihoods = net(x_padded)["likelihoods"]
    # float64 keeps the sum over ~10^5 log-likelihoods free of float32 rounding.
    estimated_bits = sum(
        -torch.log2(lk.double()).sum().item() for lk in _likelihood_tensors(likelihoods)
    )
    return ImageResult(
        name=name,
        bpp=bits / pixels,
        bpp_estimated=estimated_bits / pixels,
        psnr=psnr_8bit(x, x_hat),
        ms_ssim=ms_ssim_8bit(x, x_hat),
        encoding_time=encoding_time,
        decoding_time=decoding_time,
        height=int(height),
        width=int(width),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: list[tuple[str, torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
) -> EvalResult:
    """Code every image for real and measure it, as ``eval_model`` does (see the module docstring).

    Args:
        model: a CompressAI model (a DDP/DataParallel wrapper is unwrapped). It is deep-copied to
            ``device``; the copy is put in eval mode and its CDFs rebuilt with
            ``update(force=True)``. The caller's model, its mode and its buffers are untouched.
        images: (name, image) pairs, each image of shape (3, H, W), floating point, in [0, 1]
            (e.g. ``torchvision.transforms.ToTensor`` of an RGB image); any H, W >= 1.
        device: where coding runs. On CUDA, timings are synchronised and cuDNN is made
            deterministic for the call (restored after).

    Returns:
        The per-image results, in the order of ``images``.
    """
    if not isinstance(images, Sequence) or isinstance(images, str) or not images:
        raise ValueError(
            f"images must be a non-empty list of (name, tensor) pairs, got {images!r:.60}"
        )
    checked = [_check_image(i, item) for i, item in enumerate(images)]
    device = torch.device(device)
    source = unwrap(model)
    if not callable(getattr(source, "update", None)) or not callable(
        getattr(source, "compress", None)
    ):
        raise ValueError(
            f"model must be a CompressAI model with update() and compress(), got {type(source).__name__}"
        )
    net = copy.deepcopy(source).to(device).eval()
    net.update(force=True)
    with _deterministic_cudnn(device), _single_thread():
        return EvalResult([_code_image(net, name, image, device) for name, image in checked])


def _json_number(value: float | None) -> float | None:
    """JSON has no inf or NaN (``json.dumps(allow_nan=False)``): such values become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def eval_model_json(name: str, result: EvalResult, description: str = "Inference (ans)") -> dict:
    """One entry in ``compressai.utils.eval_model``'s JSON schema, which ``compressai.utils.plot``
    and CompressAI-Trainer read::

        {"name": name, "description": description,
         "results": {"psnr-rgb": [...], "ms-ssim-rgb": [...], "bpp": [...],
                     "encoding_time": [...], "decoding_time": [...], "bpp-estimated": [...]}}

    Each list holds one value, the per-image mean of ``result``, so that several entries
    (qualities, checkpoints) concatenate into one RD curve: see :func:`merge_eval_json`.
    ``bpp-estimated`` is an extra key; CompressAI's plot tool reads only the keys it plots and
    ignores it. ``ms-ssim-rgb`` is null when no image was large enough for MS-SSIM, and an
    infinite PSNR (lossless) is written as null, so that the dict is strict JSON.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(description, str):
        raise ValueError(f"description must be a string, got {description!r}")
    mean = result.mean()
    values = {
        "psnr-rgb": mean["psnr"],
        "ms-ssim-rgb": mean["ms_ssim"],
        "bpp": mean["bpp"],
        "encoding_time": mean["encoding_time"],
        "decoding_time": mean["decoding_time"],
        "bpp-estimated": mean["bpp_estimated"],
    }
    return {
        "name": name,
        "description": description,
        "results": {key: [_json_number(value)] for key, value in values.items()},
    }


def merge_eval_json(entries: Sequence[dict]) -> dict:
    """Concatenate the result lists of several :func:`eval_model_json` entries of the same name,
    description and keys into one entry (one point per entry, in the given order), as
    ``eval_model`` writes one entry for several qualities or checkpoints."""
    if isinstance(entries, dict) or not entries:
        raise ValueError(f"entries must be a non-empty list of entries, got {entries!r:.60}")
    first = entries[0]
    merged = {
        "name": first["name"],
        "description": first["description"],
        "results": {key: [] for key in first["results"]},
    }
    for i, entry in enumerate(entries):
        for field in ("name", "description"):
            if entry[field] != first[field]:
                raise ValueError(
                    f"entries[{i}] has {field} {entry[field]!r}, entries[0] has {first[field]!r}"
                )
        if set(entry["results"]) != set(first["results"]):
            raise ValueError(
                f"entries[{i}] has results keys {sorted(entry['results'])}, "
                f"entries[0] has {sorted(first['results'])}"
            )
        for key, values in entry["results"].items():
            merged["results"][key].extend(values)
    return merged
