"""The methods of a comparison and their specs.

A spec names a method, one of :data:`METHODS`, and optionally overrides fields of the SMA and STDET
configurations it starts from: ``"stdet+sma:trajectory=raw,k=10"`` is STDET + SMA with
``STDETConfig.trajectory = "raw"`` and ``SMAConfig.k = 10``. This is how the ablations are written
(docs/trainer.md, "``compare``"; the ``ablation`` preset in
:mod:`lic_train.experiments.presets`). Which rules a method runs is read from :data:`RULES`, never
from the letters of its name.

Examples:
    >>> method = parse_method("stdet+sma:trajectory=raw,k=10")
    >>> method.name, method.overrides, method.uses_sma, method.uses_stdet
    ('stdet+sma', {'trajectory': 'raw', 'k': 10}, True, True)
    >>> run_name(method, seed=0, lmbda=0.01)
    'stdet-sma_trajectoryraw_k10_lambda0.01_seed0'
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, replace
from typing import TYPE_CHECKING

from lic_dynamics.validation import InvalidValue
from lic_train.rules import SMAConfig, STDETConfig
from lic_train.trainer.config import EMA_DECAY, FitConfig

if TYPE_CHECKING:
    from lic_train.experiments.presets import Preset

METHODS = ("adam", "ema", "sma", "stdet", "stdet+sma")
# The rules each method runs on top of Adam: (SMA, STDET). "ema" is an SMA with EMA's
# configuration (:data:`EMA`) in place of the preset's.
RULES: dict[str, tuple[bool, bool]] = {
    "adam": (False, False),
    "ema": (True, False),
    "sma": (True, False),
    "stdet": (False, True),
    "stdet+sma": (True, True),
}

# The strongest simple averaging baseline: the per-step EMA of the weights that the seed paper's
# authors train with, as torch_ema computes it (decay 0.999 after its warm-up).
EMA = SMAConfig(k=1, beta=EMA_DECAY, warmup=True)


@dataclass(frozen=True)
class Method:
    """A parsed spec: the method ``name`` (one of :data:`METHODS`), the ``overrides`` of its SMA
    and STDET fields (typed), and the ``spec`` text it was read from (which names its runs)."""

    name: str
    overrides: dict[str, object] = field(default_factory=dict, hash=False)
    spec: str = ""

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise InvalidValue("method", f"must be one of {', '.join(METHODS)}, got {self.name!r}")
        if not self.spec:
            object.__setattr__(self, "spec", self.name)

    @property
    def uses_sma(self) -> bool:
        return RULES[self.name][0]

    @property
    def uses_stdet(self) -> bool:
        return RULES[self.name][1]


def _fields(name: str) -> dict[str, Field]:
    """The fields a spec of method ``name`` may override (SMA's and STDET's do not overlap)."""
    uses_sma, uses_stdet = RULES[name]
    fields: dict[str, Field] = {}
    if uses_sma:
        fields.update(SMAConfig.__dataclass_fields__)
    if uses_stdet:
        fields.update(STDETConfig.__dataclass_fields__)
    return fields


def _value(spec: str, name: str, kind: type, text: str) -> object:
    """``text`` as the type ``kind`` of field ``name``'s default (``true``/``false`` for a bool)."""
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise InvalidValue("method", f"{spec!r}: {name} must be true or false, got {text!r}")
        return text.lower() == "true"
    try:
        return kind(text)
    except ValueError:
        raise InvalidValue(
            "method", f"{spec!r}: {name} must be {kind.__name__}, got {text!r}"
        ) from None


def parse_method(spec: str) -> Method:
    """A method and its overrides: ``"stdet+sma:trajectory=raw,k=10"`` is STDET + SMA with
    ``STDETConfig.trajectory = "raw"`` and ``SMAConfig.k = 10`` (the field names of
    :class:`~lic_train.rules.SMAConfig` and :class:`~lic_train.rules.STDETConfig`, which do not
    overlap; ``seed`` is the run's; ``ema`` starts from :data:`EMA`); values take the type of
    the field's default. A bad spec raises an :class:`~lic_dynamics.validation.InvalidValue` (a
    ``ValueError``) that quotes it."""
    name, _, rest = spec.partition(":")
    if name not in RULES:
        raise InvalidValue("method", f"must be one of {', '.join(METHODS)}, got {spec!r}")
    fields = _fields(name)
    overrides: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        field_name, equals, text = item.partition("=")
        if not equals or field_name not in fields or field_name == "seed":
            allowed = ", ".join(f for f in fields if f != "seed") or "none"
            raise InvalidValue(
                "method",
                f"{spec!r}: {item!r} must be FIELD=VALUE with a field of {name} ({allowed})",
            )
        if field_name in overrides:
            raise InvalidValue("method", f"{spec!r}: {field_name} given twice")
        overrides[field_name] = _value(spec, field_name, type(fields[field_name].default), text)
    return Method(name, overrides, spec)


def method_config(preset: Preset, method: str | Method, seed: int, lmbda: float) -> FitConfig:
    """The configuration of ``method`` (a :class:`Method` or a spec for :func:`parse_method`) for
    one seed and lambda: the preset's base, with the preset's SMA and STDET configurations (and the
    method's overrides) where the method runs them."""
    if isinstance(method, str):
        method = parse_method(method)
    sma = {k: v for k, v in method.overrides.items() if k in SMAConfig.__dataclass_fields__}
    stdet = {k: v for k, v in method.overrides.items() if k in STDETConfig.__dataclass_fields__}
    average = EMA if method.name == "ema" else preset.sma
    try:
        return replace(
            preset.base,
            seed=seed,
            lmbda=lmbda,
            sma=replace(average, **sma) if method.uses_sma else None,
            stdet=replace(preset.stdet, seed=seed, **stdet) if method.uses_stdet else None,
        )
    except ValueError as err:
        raise InvalidValue("method", f"{method.spec!r}: {err}") from None


def run_name(method: str | Method, seed: int, lmbda: float) -> str:
    """The folder name of one run: the spec made safe for a path, the lambda and the seed."""
    spec = method.spec if isinstance(method, Method) else method
    slug = spec.replace("+", "-").replace(":", "_").replace("=", "").replace(",", "_")
    return f"{slug}_lambda{lmbda:g}_seed{seed}"
