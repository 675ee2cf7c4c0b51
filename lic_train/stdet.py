"""STDET, sensitivity-aware true and dummy embedding training (design §4.3).

The paper (arXiv 2505.18107) does not publish its rule; this is the project's formalisation.
Counting optimizer steps n = 1, 2, ...:

* **Warm-up.** Every ``snapshot_every`` (s) steps the tracked scalars (all parameters but the
  entropy bottleneck's ``quantiles``) are observed by :class:`lic_train.modes.Modes`: the SMA
  average when an SMA is given (``trajectory="sma"``, the default), else the raw weights. After
  ``snapshots`` (T) observations, at step ``warmup = s * T``, modes, references and the lines
  ``theta_i ~ a_i r + b_i`` are fitted; the lines are then kept exact by streaming sums, one more
  observation every s steps.
* **Sensitivity.** ``s_i``, the mean of ``|theta_i * g_i|`` (first-order Taylor saliency) over the
  observation steps since the last event, read from the gradients the loop already computed.
* **Events**, at ``n = warmup + j * every``, while fewer than ``max_embedded`` of the tracked scalars
  are embedded: the candidates are the trainable, non-reference scalars whose fit has
  ``R^2 >= min_r2``; the ``ceil(fraction * N)`` (capped) whose ``(a, b)`` moved least since the last
  event (``sqrt(da^2 + db^2)``, as in CMD) are chosen; the ``keep_sensitive`` most sensitive of them
  stay trainable this round. With ``granularity="tensor"`` whole tensors are chosen instead:
  those without a reference whose mean ``R^2`` passes the floor, by mean drift, as long as they fit
  in the budget, less the ``keep_sensitive`` most sensitive by mean sensitivity. The rest are
  embedded by the variant:

  - ``"true"``: snap onto the line, ``theta_i := a_i r + b_i``;
  - ``"dummy"``: keep the value, ``theta_i := a_i (r - r_e) + theta_i(t_e)``, i.e. the line through
    the current point, so the loss does not jump;
  - ``"sensitivity"`` (default): true for the ``sensitivity_quantile`` share of them with the
    lowest sensitivity, dummy for the rest.

  Both kinds freeze ``(a_i, b_i)`` (dummy: ``b_i = theta_i(t_e) - a_i r(t_e)``) and follow the
  reference from then on.
* **Embedded scalars** receive no gradient (:meth:`STDET.after_backward` zeroes it, so clipping and
  the optimizer never see it), their optimizer state is zeroed at embedding (an optimizer that folds
  weight decay into its state refills it, harmlessly), and they are recomputed from the references
  after every optimizer step. A tensor whose scalars are all embedded leaves the optimizer's param
  groups and autograd (``requires_grad=False``): its weight gradient is no longer computed and its
  optimizer state is freed. References are never embedded.
* **Saturation.** Once the cap is reached nothing can change (embedding is final), so observations,
  sensitivity and events stop; each step then only recomputes the embedded scalars.

The loop calls, in this order: ``backward()``, :meth:`after_backward`, clipping,
``optimizer.step()``, ``sma.step()``, :meth:`after_step`. A step post-hook on the optimizer puts the
embedded scalars back on their lines right after ``optimizer.step()``, so the SMA samples them
there. Under ``DistributedDataParallel`` the fit and every event are decided on rank 0 and
broadcast, so all ranks embed the same scalars.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from lic_train import distributed
from lic_train.modes import Modes
from lic_train.parameters import network_parameters
from lic_train.sma import SMA
from nqm import _checks

VARIANTS = ("sensitivity", "true", "dummy")
GRANULARITIES = ("scalar", "tensor")
TRAJECTORIES = ("sma", "raw")
MAX_MODES = 256  # as in CMD; keeps the clustering and the reference gathers small
TRAINABLE, TRUE, DUMMY = 0, 1, 2  # values of STDET.kind


@dataclass(frozen=True)
class STDETConfig:
    """STDET's knobs; every field is validated on construction.

    Attributes:
        snapshot_every: s, steps between observations of the trajectory (>= 1).
        snapshots: T, observations before the fit (>= 3); the warm-up is ``s * T`` steps.
        every: L, steps between embedding events (>= 1).
        modes: M, the most modes, in [1, 256].
        samples: K, scalars sampled for the clustering (>= 2).
        fraction: share of the tracked scalars chosen per event, in (0, 1].
        max_embedded: cap on the embedded share of the tracked scalars, in (0, 1].
        min_r2: floor on a candidate's R^2, in [0, 1].
        keep_sensitive: share of each event's chosen scalars, the most sensitive, left trainable,
            in [0, 1).
        sensitivity_quantile: in the "sensitivity" variant, the share of each event's embedded
            scalars, the least sensitive, that are embedded true (the rest dummy), in [0, 1].
        variant: "sensitivity", "true" or "dummy".
        granularity: "scalar" (CMD's choice: any scalar may be embedded) or "tensor" (whole
            tensors only, ranked by their mean drift, so that each embedded tensor leaves the
            optimizer and autograd at once: the choice that saves compute).
        trajectory: what CMD observes: "sma" (the average of the SMA passed to STDET, the raw
            weights when none is; the default) or "raw" (the optimizer's weights). Measured with
            SMA over 4 lambdas x 3 seeds (benchmarks/results/convergence*): "sma" ended at
            1.11 +- 0.49x Adam's validation loss, "raw" at 1.77 +- 2.47x; at one lambda (0.0067,
            the ablation) "raw" looked better, 0.86x against 1.41x.
        seed: seed of the clustering sample (>= 0).
    """

    snapshot_every: int = 10
    snapshots: int = 10
    every: int = 50
    modes: int = 10
    samples: int = 1000
    fraction: float = 0.1
    max_embedded: float = 0.6
    min_r2: float = 0.5
    keep_sensitive: float = 0.1
    sensitivity_quantile: float = 0.5
    variant: str = "sensitivity"
    granularity: str = "scalar"
    trajectory: str = "sma"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (
            ("snapshot_every", 1),
            ("snapshots", 3),
            ("every", 1),
            ("modes", 1),
            ("samples", 2),
            ("seed", 0),
        ):
            object.__setattr__(
                self, name, _checks.integer(name, getattr(self, name), minimum=minimum)
            )
        for name, allowed, low_open, high_open in (
            ("fraction", "(0, 1]", True, False),
            ("max_embedded", "(0, 1]", True, False),
            ("min_r2", "[0, 1]", False, False),
            ("keep_sensitive", "[0, 1)", False, True),
            ("sensitivity_quantile", "[0, 1]", False, False),
        ):
            value = _checks.real(
                name, getattr(self, name), allowed, low=0, high=1,
                low_open=low_open, high_open=high_open,
            )  # fmt: skip
            object.__setattr__(self, name, value)
        if self.every < self.snapshot_every:
            # Sensitivity is read on observation steps: every window between events needs one.
            raise ValueError(
                f"every must be at least snapshot_every ({self.snapshot_every}), got {self.every}"
            )
        if self.modes > MAX_MODES:
            raise ValueError(f"modes must be an integer in [1, {MAX_MODES}], got {self.modes}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}"
            )
        if self.trajectory not in TRAJECTORIES:
            raise ValueError(
                f"trajectory must be one of {', '.join(TRAJECTORIES)}, got {self.trajectory!r}"
            )

    @property
    def warmup(self) -> int:
        """Optimizer steps before the fit (and the first possible event at ``warmup + every``)."""
        return self.snapshot_every * self.snapshots


def _put(tensor: torch.Tensor, index: torch.Tensor, values: torch.Tensor | float) -> None:
    """``tensor.reshape(-1)[index] = values`` in place (``values`` a tensor or one number), whatever
    the memory layout: a ``channels_last`` tensor has no flat view, so it goes through a row-major
    copy. ``index_copy_``/``index_fill_`` with int64 indices: the fastest scatter on the CPU."""

    def scatter(flat: torch.Tensor) -> None:
        if isinstance(values, torch.Tensor):
            flat.index_copy_(0, index, values)
        else:
            flat.index_fill_(0, index, values)

    if tensor.is_contiguous():
        scatter(tensor.view(-1))
    else:
        flat = tensor.reshape(-1)
        scatter(flat)
        tensor.copy_(flat.view(tensor.shape))


class _Embedded(NamedTuple):
    """The embedded scalars of one tensor, on its device: ``theta[index] = a * r[mode] + b``.

    Device memory per embedded scalar: ``a`` and ``b`` in the parameter's dtype, an int32 mode
    (``index_select`` takes int32) and, unless the whole tensor is embedded (``index is None``), an
    int64 position (``index_copy_`` takes only int64, and it is twice as fast as ``index_put_``).
    """

    tensor: int
    index: torch.Tensor | None
    a: torch.Tensor
    b: torch.Tensor
    mode: torch.Tensor


class STDET:
    """STDET for the network parameters of ``model`` trained by ``optimizer``.

    Args:
        model: the module (a ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer: any ``torch.optim`` optimizer over (a superset of) the network parameters.
        config: :class:`STDETConfig`.
        sma: when given and ``config.trajectory == "sma"``, the trajectory is observed on its
            average (raw weights before its first sample); embedded scalars are still computed
            from the raw reference.
        device: where the CMD bookkeeping lives (default: the CPU, to spare accelerator memory).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: STDETConfig | None = None,
        *,
        sma: SMA | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config or STDETConfig()
        self.optimizer = optimizer
        self.sma = sma
        named = [(name, p) for name, p in network_parameters(model) if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters for STDET to track")
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.total = sum(p.numel() for _, p in model.named_parameters())
        sizes = [p.numel() for p in self.params]
        self.offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        self.device = torch.device(device)
        self.modes = Modes(
            sizes,
            snapshots=self.config.snapshots,
            modes=self.config.modes,
            samples=self.config.samples,
            seed=self.config.seed,
            device=self.device,
            # float64 weights (or a float64 average) keep a float64 history: rounding it to float32
            # would distort the fit that the later, exact observations continue.
            snapshot_dtype=torch.float64
            if any(p.dtype == torch.float64 for p in self.params)
            or (sma is not None and self.config.trajectory == "sma" and sma.dtype == torch.float64)
            else torch.float32,
        )
        self.size = self.modes.size
        self.steps = 0
        self.kind = torch.zeros(self.size, dtype=torch.uint8, device=self.device)
        self.frozen_a = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self.frozen_b = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self._last_a = self._last_b = None  # (a, b) at the fit or the last event
        self._sensitivity_sum = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self._sensitivity_count = 0
        self._embedded: list[_Embedded] = []
        self._removed: set[int] = set()
        self._embedded_total = 0
        self._smallest_free: float | None = None  # cache of _smallest_free_tensor()
        self._reference_at: list[tuple[torch.Tensor, tuple[int, ...]]] | None = None
        self.events = 0
        # Embedded scalars go back onto their lines as soon as the optimizer has stepped, so that
        # anything that reads the weights before after_step (the SMA's sample) sees them there.
        self._materialized = False
        self._hook = optimizer.register_step_post_hook(self._after_optimizer_step)

    # --- the two calls of the training loop -------------------------------------------------

    @torch.no_grad()
    def after_backward(self) -> None:
        """Zero the gradient of embedded scalars; accumulate sensitivity on observation steps."""
        for e in self._embedded:
            grad = self.params[e.tensor].grad
            if grad is not None and e.index is not None:
                _put(grad, e.index, 0.0)
        if self.saturated:
            return
        if self.modes.fitted and (self.steps + 1) % self.config.snapshot_every == 0:
            for p, acc in zip(self.params, self._sensitivity_sum, strict=True):
                if p.grad is not None:
                    acc.add_((p.detach() * p.grad).abs_())
            self._sensitivity_count += 1

    @torch.no_grad()
    def after_step(self) -> None:
        """Recompute embedded scalars from their references; observe; embed when an event is due."""
        self.steps += 1
        feedback = self.sma is not None and self.sma.feedback  # it may have reset the weights
        if feedback or not self._materialized:
            self.materialize()
        self._materialized = False
        if self.saturated:
            return
        if self.steps % self.config.snapshot_every == 0:
            was_fitted = self.modes.fitted
            observe_average = self.sma is not None and self.config.trajectory == "sma"
            source = self.sma.tensors(self.names) if observe_average else self.params
            self.modes.observe(source)
            if self.modes.fitted and not was_fitted:
                self._last_a, self._last_b = self.modes.coefficients()
        warm = self.steps - self.config.warmup
        if self.modes.fitted and warm > 0 and warm % self.config.every == 0:
            self._event()

    # --- embedding ----------------------------------------------------------------------------

    def _references(self) -> torch.Tensor:
        """Current values of the references (M',), on the first parameter's device, uncast."""
        if self._reference_at is None:
            self._reference_at = []
            for flat in self.modes.reference.tolist():
                i = bisect.bisect_right(self.offsets, flat) - 1
                p = self.params[i]
                where = torch.unravel_index(torch.tensor(flat - self.offsets[i]), p.shape)
                self._reference_at.append((p, tuple(int(w) for w in where)))
        device = self.params[0].device
        return torch.stack([p.detach()[where].to(device) for p, where in self._reference_at])

    def reference_values(self) -> torch.Tensor:
        """Current raw values of the references, float64 (M',) on the bookkeeping device."""
        return self._references().to(self.device, torch.float64)

    def _after_optimizer_step(self, *_: object) -> None:
        self.materialize()
        self._materialized = True

    @torch.no_grad()
    def materialize(self) -> None:
        """``theta_i := a_i r_m(i) + b_i`` for every embedded scalar, from the current references."""
        if not self._embedded:
            return
        r = self._references()
        converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        for e in self._embedded:
            p = self.params[e.tensor]
            key = (p.device, p.dtype)
            if key not in converted:
                converted[key] = r.to(p.device, p.dtype)
            values = torch.addcmul(e.b, e.a, converted[key].index_select(0, e.mode))
            if e.index is None:
                p.copy_(values.view(p.shape))
            else:
                _put(p, e.index, values)

    def _event(self) -> None:
        cfg = self.config
        a, b = self.modes.coefficients()
        drift = torch.hypot(a - self._last_a, b - self._last_b)
        self._last_a, self._last_b = a, b
        embedded = self.kind != TRAINABLE
        budget = min(math.ceil(cfg.fraction * self.size), self._cap_left())
        self.events += 1
        if budget <= 0:
            return
        if distributed.rank() == 0:
            new_kind = self._choose(drift, embedded, budget)
        else:
            new_kind = torch.zeros_like(self.kind)
        distributed.broadcast_from_rank0(new_kind)
        chosen = new_kind != TRAINABLE
        theta = torch.cat(
            [p.detach().reshape(-1).to(self.device, torch.float64) for p in self.params]
        )
        r = self.reference_values()[self.modes.mode]
        dummy = new_kind == DUMMY
        self.frozen_a[chosen] = a[chosen]
        self.frozen_b[chosen] = torch.where(dummy, theta - a * r, b)[chosen]
        distributed.broadcast_from_rank0(self.frozen_a, self.frozen_b)
        self.kind[chosen] = new_kind[chosen]
        self._embedded_total = int((self.kind != TRAINABLE).sum())
        self._smallest_free = None
        self._sensitivity_sum = [acc.zero_() for acc in self._sensitivity_sum]
        self._sensitivity_count = 0
        self._rebuild(clear_state=chosen)
        self.materialize()

    def _choose(self, drift, embedded, budget) -> torch.Tensor:
        """The kind (TRUE/DUMMY) of each scalar embedded at this event, TRAINABLE elsewhere."""
        cfg = self.config
        new_kind = torch.zeros_like(self.kind)
        r2 = self.modes.r_squared()
        if cfg.granularity == "tensor":
            steady = self._choose_tensors(drift, r2, embedded, budget)
        else:
            steady = self._choose_scalars(drift, r2, embedded, budget)
        if steady.numel() == 0:
            return new_kind
        sensitivity = self.sensitivity()[steady]
        if cfg.variant == "true":
            new_kind[steady] = TRUE
        elif cfg.variant == "dummy":
            new_kind[steady] = DUMMY
        else:
            order = torch.argsort(sensitivity, stable=True)
            n_true = round(cfg.sensitivity_quantile * order.numel())
            new_kind[steady[order[:n_true]]] = TRUE
            new_kind[steady[order[n_true:]]] = DUMMY
        return new_kind

    def _choose_scalars(self, drift, r2, embedded, budget) -> torch.Tensor:
        """The steadiest eligible scalars, less the most sensitive ``keep_sensitive`` of them."""
        eligible = ~embedded & (r2 >= self.config.min_r2)
        eligible[self.modes.reference] = False
        candidates = torch.nonzero(eligible).squeeze(1)
        n = min(budget, candidates.numel())
        steady = candidates[torch.topk(drift[candidates], n, largest=False, sorted=False).indices]
        keep = math.floor(self.config.keep_sensitive * n)
        if keep:
            sensitivity = self.sensitivity()[steady]
            steady = steady[torch.topk(sensitivity, n - keep, largest=False, sorted=False).indices]
        return steady

    def _choose_tensors(self, drift, r2, embedded, budget) -> torch.Tensor:
        """Whole tensors, steadiest first by mean drift, that hold no reference, are not embedded
        yet, have a mean R^2 of at least ``min_r2`` and fit in the budget; less the most sensitive
        ``keep_sensitive`` of them by mean sensitivity. Flat indices of their scalars."""
        holds_reference = set(
            bisect.bisect_right(self.offsets, r) - 1 for r in self.modes.reference.tolist()
        )
        sensitivity = self.sensitivity()
        tensors = []
        for i in range(len(self.params)):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            if (
                i in holds_reference
                or embedded[lo:hi].any()
                or r2[lo:hi].mean() < self.config.min_r2
            ):
                continue
            tensors.append((drift[lo:hi].mean().item(), i))
        chosen, room = [], budget
        for _, i in sorted(tensors):
            size = self.offsets[i + 1] - self.offsets[i]
            if size <= room:
                chosen.append(i)
                room -= size
        keep = math.floor(self.config.keep_sensitive * len(chosen))
        if keep:
            by_sensitivity = sorted(
                chosen,
                key=lambda i: sensitivity[self.offsets[i] : self.offsets[i + 1]].mean().item(),
            )
            chosen = by_sensitivity[: len(chosen) - keep]
        if not chosen:
            return torch.empty(0, dtype=torch.long, device=self.device)
        return torch.cat(
            [torch.arange(self.offsets[i], self.offsets[i + 1], device=self.device) for i in chosen]
        )

    def sensitivity(self) -> torch.Tensor:
        """Mean ``|theta * g|`` per tracked scalar since the last event, float64 (N,) (zeros before
        any observation)."""
        flat = torch.cat(
            [acc.reshape(-1).to(self.device, torch.float64) for acc in self._sensitivity_sum]
        )
        return flat / max(self._sensitivity_count, 1)

    def _rebuild(self, clear_state: torch.Tensor | None = None) -> None:
        """Per-tensor index, a, b and mode of the embedded scalars; zero the optimizer state of
        ``clear_state``; take fully embedded tensors out of the optimizer and autograd."""
        self._embedded = []
        for i, p in enumerate(self.params):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            local = torch.nonzero(self.kind[lo:hi]).squeeze(1)
            if local.numel() == 0:
                continue
            flat = local + lo
            whole = local.numel() == p.numel()
            self._embedded.append(
                _Embedded(
                    tensor=i,
                    index=None if whole else local.to(p.device),
                    a=self.frozen_a[flat].to(p.device, p.dtype),
                    b=self.frozen_b[flat].to(p.device, p.dtype),
                    mode=self.modes.mode[flat].to(p.device, torch.int32),
                )
            )
            if whole:
                self._remove(i)
            elif clear_state is not None:
                fresh = torch.nonzero(clear_state[lo:hi]).squeeze(1).to(p.device)
                for value in self.optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        _put(value, fresh, 0)

    def _remove(self, i: int) -> None:
        if i in self._removed:
            return
        p = self.params[i]
        for group in self.optimizer.param_groups:
            group["params"] = [q for q in group["params"] if q is not p]
        self.optimizer.state.pop(p, None)
        p.requires_grad_(False)
        p.grad = None
        self._removed.add(i)

    # --- reporting and state ------------------------------------------------------------------

    @property
    def saturated(self) -> bool:
        """Whether the cap is reached (with ``granularity="tensor"``: no free tensor fits under it).
        Embedding is final, so from then on only the embedded scalars are recomputed after each
        step: no more observations, sensitivity or events."""
        left = self._cap_left()
        if left <= 0:
            return True
        if self.config.granularity == "tensor" and self.modes.fitted:
            return left < self._smallest_free_tensor()
        return False

    def _smallest_free_tensor(self) -> float:
        """Size of the smallest tensor that holds no reference and is not embedded (inf if none)."""
        if self._smallest_free is None:
            references = self.modes.reference.tolist()
            holds = {bisect.bisect_right(self.offsets, r) - 1 for r in references}
            sizes = [
                self.offsets[i + 1] - self.offsets[i]
                for i in range(len(self.params))
                if i not in holds and i not in self._removed
            ]
            self._smallest_free = min(sizes, default=math.inf)
        return self._smallest_free

    def _cap_left(self) -> int:
        return math.floor(self.config.max_embedded * self.size) - self._embedded_total

    def embedded_count(self) -> dict[str, int]:
        """Number of tracked scalars by kind: ``{"true": .., "dummy": .., "trainable": ..}``."""
        counts = torch.bincount(self.kind.long(), minlength=3).tolist()
        return {"trainable": counts[TRAINABLE], "true": counts[TRUE], "dummy": counts[DUMMY]}

    def trainable_fraction(self) -> float:
        """Share of all the model's parameters (``quantiles`` included) still trained."""
        return 1.0 - int((self.kind != TRAINABLE).sum()) / self.total

    def removed_tensors(self) -> list[str]:
        """Names of the tensors that left the optimizer (fully embedded)."""
        return [self.names[i] for i in sorted(self._removed)]

    def nbytes(self) -> int:
        """Bookkeeping memory in bytes (modes, embedding tables, sensitivity), all devices."""
        tensors = [self.kind, self.frozen_a, self.frozen_b, *self._sensitivity_sum]
        if self._last_a is not None:
            tensors += [self._last_a, self._last_b]
        for e in self._embedded:
            tensors += [t for t in (e.index, e.a, e.b, e.mode) if t is not None]
        return self.modes.nbytes() + sum(t.numel() * t.element_size() for t in tensors)

    def state_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "names": list(self.names),
            "steps": self.steps,
            "events": self.events,
            "modes": self.modes.state_dict(),
            "kind": self.kind.clone(),
            "frozen_a": self.frozen_a.clone(),
            "frozen_b": self.frozen_b.clone(),
            "last_a": None if self._last_a is None else self._last_a.clone(),
            "last_b": None if self._last_b is None else self._last_b.clone(),
            "sensitivity_sum": [acc.clone() for acc in self._sensitivity_sum],
            "sensitivity_count": self._sensitivity_count,
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a fresh STDET built on the same model and optimizer.

        Fully embedded tensors leave the optimizer again, so load this **before**
        ``optimizer.load_state_dict`` (whose param groups must match the saved ones).
        """
        if state["config"] != asdict(self.config):
            raise ValueError(
                f"STDET state was saved with config {state['config']}, this STDET has "
                f"{asdict(self.config)}"
            )
        if state["names"] != self.names:
            raise ValueError("STDET state tracks other parameters than this model's")
        self.steps = int(state["steps"])
        self.events = int(state["events"])
        self.modes.load_state_dict(state["modes"])
        self._reference_at = None
        self.kind = state["kind"].to(self.device).clone()
        self._embedded_total = int((self.kind != TRAINABLE).sum())
        self._smallest_free = None
        self.frozen_a = state["frozen_a"].to(self.device).clone()
        self.frozen_b = state["frozen_b"].to(self.device).clone()
        last = (state["last_a"], state["last_b"])
        self._last_a, self._last_b = (
            (None, None) if last[0] is None else tuple(t.to(self.device).clone() for t in last)
        )
        self._sensitivity_sum = [
            t.to(p.device).clone()
            for t, p in zip(state["sensitivity_sum"], self.params, strict=True)
        ]
        self._sensitivity_count = int(state["sensitivity_count"])
        self._rebuild()
        self.materialize()
