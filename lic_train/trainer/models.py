"""CompressAI image models by name: the zoo architectures at a quality, or with explicit widths.

Names are those of ``compressai.zoo.image_models`` plus the image models that only the registry
knows (``compressai.registry.MODELS``: ``elic2022-official``, ``elic2022-chandelier``,
``cheng2020-anchor-checkerboard``, ...). Weights are never downloaded: every model starts from its
random initialisation (``pretrained=False``), which is what training needs and all that works offline.

A zoo *quality* only picks the widths (N, M) from ``compressai.zoo.image.cfgs``;
explicit N and M build the same architecture narrower, for
small CPU runs. Models are built from the registry class, not through the zoo functions, because
``compressai.zoo.bmshj2018_factorized_relu`` builds the GDN ``FactorizedPrior`` (it loads the
``"bmshj2018-factorized"`` architecture; CompressAI 1.2.8).

The variable-rate zoo models (``*-vbr``) have a single configuration (N, M) = (192, 320): the zoo
ignores their quality, so :func:`quality_range` returns None for them and a quality is refused.

Widths are at most :data:`MAX_WIDTH`. ``build_model(..., shapes_only=True)`` builds a model whose
large tensors live on the ``meta`` device (shapes and dtypes, no memory): a checkpoint's weights are
compared with it before a model of the size the file chose is built for real.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import compressai.zoo
import compressai.zoo.image
import compressai.zoo.image_vbr
import compressai.zoo.pretrained
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import Elic2022Chandelier, Elic2022Official
from compressai.models.utils import remap_old_keys
from compressai.registry import MODELS
from torch import nn
from torch.overrides import TorchFunctionMode

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue
from lic_train.rules.parameters import unwrap

# Registry entries under these modules are point-cloud and video models, not image models.
_NON_IMAGE_MODULES = ("compressai.models.pointcloud", "compressai.models.video")

# ELIC splits the latent into channel groups 16, 16, 32, 64 and M - 128 when none are given.
_ELIC_CLASSES = (Elic2022Official, Elic2022Chandelier)
_ELIC_FIXED_GROUPS = 128

# The widest N or M accepted: far beyond any published model (the zoo's widest is 320; one 5x5
# convolution 16384 -> 16384 alone holds 6.7e9 weights), and small enough that the few per-channel
# tensors a shapes-only build still allocates (CompressAI's entropy bottleneck uses torch.Tensor(C,
# ...), which no device context reaches) stay a few MB.
MAX_WIDTH = 2**14
# A shapes-only build keeps tensors of at most this many elements real: model code reads values
# of small ones (ELIC's channel ramps call .tolist()); anything larger is a meta tensor.
_REAL_ELEMENTS = 4096
_META = torch.device("meta")
# torch's functions that make a tensor from nothing, and so take a device (CompressAI's models make
# their parameters and buffers with these; a tensor made from another follows that one's device).
_FACTORIES = frozenset({
    torch.empty, torch.zeros, torch.ones, torch.full, torch.eye, torch.arange, torch.linspace,
    torch.logspace, torch.rand, torch.randn, torch.randint, torch.randperm, torch.tensor,
    torch.as_tensor, torch.empty_strided, torch.scalar_tensor,
})  # fmt: skip


def _is_image_model(name: str, cls: type) -> bool:
    if name in compressai.zoo.pointcloud_models or name in compressai.zoo.video_models:
        return False
    return not cls.__module__.startswith(_NON_IMAGE_MODULES)


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts, sorted: the zoo image models and the registry-only
    image models (models registered later with ``compressai.registry.register_model`` included)."""
    zoo = set(compressai.zoo.image_models)
    registry = {name for name, cls in MODELS.items() if _is_image_model(name, cls)}
    return sorted(zoo | registry)


def _check_name(name: object) -> str:
    names = model_names()
    if isinstance(name, str) and name in names:
        return name
    if isinstance(name, str) and name in MODELS:
        raise InvalidValue("name", f"{name!r} is a point-cloud or video model, not an image model")
    nearest = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f"nearest: {', '.join(nearest)}" if nearest else f"known: {', '.join(names)}"
    raise InvalidValue("name", f"must be a CompressAI image model, got {name!r}; {hint}")


def quality_range(name: str) -> tuple[int, int] | None:
    """The zoo qualities (lowest, highest) of ``name``: (1, 8), or (1, 6) for ``cheng2020-*``.

    None for models without zoo qualities: the registry-only models and the variable-rate
    ``*-vbr`` models (one configuration whatever the quality).
    """
    name = _check_name(name)
    qualities = compressai.zoo.image.cfgs.get(name)
    if not qualities:
        return None
    return min(qualities), max(qualities)


def _takes(cls: type, parameter: str) -> bool:
    return parameter in inspect.signature(cls).parameters


def _check_quality(name: str, quality: object, low: int, high: int) -> int:
    allowed = f"an integer in [{low}, {high}] for {name}"
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real):
        raise InvalidValue("quality", f"must be {allowed}, got {quality!r}")
    if not float(quality).is_integer() or not low <= quality <= high:
        raise InvalidValue("quality", f"must be {allowed}, got {quality!r}")
    return int(quality)


def model_spec(
    name: str, *, quality: int | None = None, N: int | None = None, M: int | None = None
) -> tuple[type[nn.Module], dict[str, int]]:
    """The class and constructor keyword arguments that :func:`build_model` uses, without
    building anything (same arguments, same checks, same errors)."""
    name = _check_name(name)
    cls = MODELS[name]  # the zoo names are registered under the same names
    widths_given = N is not None or M is not None
    if quality is not None and widths_given:
        raise InvalidValue(
            "quality", f"{quality!r}: give either a quality or N and M, not both (N={N!r}, M={M!r})"
        )
    if widths_given:
        if N is None or M is None:
            missing = "M" if M is None else "N"
            raise InvalidValue(missing, f"missing: N and M are given together (N={N!r}, M={M!r})")
        N = validation.integer("N", N, minimum=1, maximum=MAX_WIDTH)
        M = validation.integer("M", M, minimum=1, maximum=MAX_WIDTH)
        if not _takes(cls, "N"):
            raise InvalidValue(
                "name", f"{name!r} does not take N and M (its class is {cls.__name__})"
            )
        if not _takes(cls, "M"):
            # cheng2020-*: the latent has as many channels as the transforms (M = N).
            if M != N:
                raise InvalidValue(
                    "M", f"must equal N for {name} (its latent has N channels), got M={M}"
                )
            return cls, {"N": N}
        if issubclass(cls, _ELIC_CLASSES) and M <= _ELIC_FIXED_GROUPS:
            raise InvalidValue(
                "M",
                f"must be at least {_ELIC_FIXED_GROUPS + 1} for {name} "
                f"(channel groups 16, 16, 32, 64, M - {_ELIC_FIXED_GROUPS}), got M={M}",
            )
        return cls, {"N": N, "M": M}

    qualities = compressai.zoo.image.cfgs.get(name)
    if quality is not None:
        if not qualities:
            kind = "variable-rate" if name in compressai.zoo.image_models else "registry-only"
            raise InvalidValue(
                "quality", f"must be None for {name} ({kind}, no zoo qualities), got {quality!r}"
            )
        quality = _check_quality(name, quality, min(qualities), max(qualities))
        widths = qualities[quality]
    elif qualities:
        low, high = min(qualities), max(qualities)
        raise InvalidValue(
            "quality",
            f"must be an integer in [{low}, {high}] for {name}, or give N and M; got None",
        )
    elif name in compressai.zoo.image_vbr.cfgs:
        widths = compressai.zoo.image_vbr.cfgs[name]
    else:
        return cls, {}  # registry-only model: its constructor's defaults
    return cls, dict(zip(("N", "M"), widths, strict=False))


class _ShapesOnly(TorchFunctionMode):
    """Tensor factories make meta tensors (no memory) unless the tensor is small, and an operation
    that meets a meta tensor moves its other tensors to meta (CompressAI registers small buffers
    with ``torch.Tensor([...])``, which ignores device contexts, and computes with them at init)."""

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES and kwargs.get("device") is None:
            shaped = func(*args, **{**kwargs, "device": _META})
            if not isinstance(shaped, torch.Tensor) or shaped.numel() > _REAL_ELEMENTS:
                return shaped
            return func(*args, **kwargs)
        if _meets_meta((args, kwargs)):
            args, kwargs = _to_meta((args, kwargs))
        return func(*args, **kwargs)


def _meets_meta(value: Any) -> bool:
    """Whether a meta tensor is among ``value``'s arguments (in tuples, lists and dicts)."""
    if isinstance(value, torch.Tensor):
        return value.is_meta
    if isinstance(value, dict):
        return any(_meets_meta(item) for item in value.values())
    return isinstance(value, tuple | list) and any(_meets_meta(item) for item in value)


def _to_meta(value: Any) -> Any:
    """``value`` with every tensor among its arguments moved to the meta device."""
    if isinstance(value, torch.Tensor):
        return value.to(_META)
    if isinstance(value, dict):
        return {key: _to_meta(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_meta(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(item) for item in value)
    return value


def build_model(
    name: str,
    *,
    quality: int | None = None,
    N: int | None = None,
    M: int | None = None,
    shapes_only: bool = False,
) -> nn.Module:
    """A freshly initialised CompressAI image model (no weights are downloaded).

    Args:
        name: one of :func:`model_names`.
        quality: zoo quality in :func:`quality_range` (name), which picks (N, M) as the zoo does;
            only for zoo models with qualities.
        N, M: channel widths (both or neither, each in [1, :data:`MAX_WIDTH`]) instead of a
            quality: the same architecture, narrower or wider. ``cheng2020-*`` have M = N; ELIC
            needs M >= 129. A registry-only or variable-rate model given neither uses its defaults.
        shapes_only: build the model with every tensor of more than 4096 elements on the ``meta``
            device: the same names, shapes and dtypes in a few MB at most, to compare a
            checkpoint's weights with before building the model for real. Its values are not
            meant to be used, and the random state is left as it was.

    Raises:
        ValueError: unknown name (with the nearest names), quality out of range or given for a
            model without qualities, quality and N/M together, only one of N and M, N or M
            outside [1, MAX_WIDTH], or a zoo model with qualities given neither quality nor N and
            M.
    """
    cls, kwargs = model_spec(name, quality=quality, N=N, M=M)
    if not shapes_only:
        return cls(**kwargs)
    with torch.random.fork_rng(devices=[]), _ShapesOnly():
        return cls(**kwargs)


def _conv_widths(model: nn.Module) -> tuple[int | None, int | None]:
    """(N, M) read off the analysis transform ``g_a``: the output channels of its first and last
    convolutions, as CompressAI's ``from_state_dict`` does (``g_a.0.weight``, ``g_a.6.weight``)."""
    g_a = getattr(model, "g_a", None)
    if not isinstance(g_a, nn.Module):
        return None, None
    convs = [m for m in g_a.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    if not convs:
        return None, None
    return convs[0].out_channels, convs[-1].out_channels


def describe(model: nn.Module) -> dict:
    """``{"class": ..., "N": ..., "M": ...}`` for checkpoint compatibility checks.

    N and M come from the weights of the analysis transform (so they hold for any CompressAI image
    model, ELIC and the checkerboard model included, which store no ``N``/``M`` attributes), else
    from integer ``N``/``M`` attributes, else they are None. Two models with equal descriptions
    built by :func:`build_model` have the same parameter shapes (a DDP wrapper is unwrapped).
    """
    model = unwrap(model)
    n, m = _conv_widths(model)
    if n is None:
        n, m = (
            value if isinstance(value, int) and not isinstance(value, bool) else None
            for value in (getattr(model, "N", None), getattr(model, "M", None))
        )
    return {"class": type(model).__name__, "N": n, "M": m}


def _widths_of(state_dict: dict) -> tuple[int, int] | None:
    """(N, M) read off the weights of ``g_a``: the output channels of its first and last 4-D
    weights in module order, as :func:`describe` reads them off a model."""
    convs = [
        (name, t)
        for name, t in state_dict.items()
        if name.startswith("g_a.") and name.endswith(".weight") and t.ndim == 4
    ]
    if not convs:
        return None
    order = {name: i for i, name in enumerate(state_dict)}  # a state dict keeps module order
    convs.sort(key=lambda item: order[item[0]])
    return int(convs[0][1].shape[0]), int(convs[-1][1].shape[0])


def from_weights(name: str, state_dict: dict, *, shapes_only: bool = False) -> nn.Module:
    """A fresh ``name`` model shaped for ``state_dict`` (not loaded): its widths (N, M) are read
    off the analysis transform's weights, as CompressAI's ``from_state_dict`` does, so that a
    checkpoint that does not say its widths can be loaded. A model that takes no widths is built
    with its defaults. ``shapes_only``: as :func:`build_model`'s (the weights may be meta tensors).

    Raises:
        ValueError: an unknown name, weights without an analysis transform (``g_a.*``), or widths
            outside [1, MAX_WIDTH].
    """
    name = _check_name(name)
    cls = MODELS[name]
    if not _takes(cls, "N"):
        return build_model(name, shapes_only=shapes_only)
    widths = _widths_of(state_dict)
    if widths is None:
        raise ValueError(f"the weights hold no analysis transform (g_a.*) of a {name} model")
    n, m = widths
    return build_model(name, N=n, M=m if _takes(cls, "M") else n, shapes_only=shapes_only)


def current_names(state_dict: dict, model: nn.Module) -> dict:
    """``state_dict`` with the parameter names of older CompressAI versions renamed as CompressAI's
    own loaders rename them (``module.`` prefixes, ``downsample`` -> ``skip``, the entropy
    bottleneck's ``_biases.N``/``_matrices.N``/``_factors.N`` and ``_bias0``-style names), so that
    published checkpoints check against ``model``'s names."""
    renamed = compressai.zoo.pretrained.load_pretrained(state_dict)
    for name, module in unwrap(model).named_modules():
        if isinstance(module, EntropyBottleneck):
            renamed = remap_old_keys(name, renamed)
    return dict(renamed)
