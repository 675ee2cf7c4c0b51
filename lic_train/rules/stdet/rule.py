"""STDET, sensitivity-aware true and dummy embedding training (docs/rules.md).

The paper (arXiv 2505.18107) does not publish its rule; this is the project's formalisation.
Counting optimizer steps n = 1, 2, ...:

* **Warm-up.** Every ``snapshot_every`` (s) steps the tracked scalars (all parameters but the
  entropy bottleneck's ``quantiles``) are observed by :class:`lic_train.rules.modes.Modes`: the
  trajectory source STDET is given (an SMA's average) when ``trajectory="sma"`` (the default),
  else the raw weights. After
  ``snapshots`` (T) observations, at step ``warmup = s * T``, modes, references and the lines
  ``theta_i ~ a_i r + b_i`` are fitted; the lines are then kept exact by streaming sums, one more
  observation every s steps. With ``live_references`` only scalars that moved are clustered, so
  every reference can move.
* **Sensitivity.** ``s_i``, the mean of ``|theta_i * g_i|`` (first-order Taylor saliency) over the
  observation steps since the last event, read from the gradients the loop already computed.
* **Events**, at ``n = warmup + j * every``, while fewer than ``max_embedded`` of the tracked scalars
  are embedded: the candidates are the trainable, non-reference scalars whose fit has
  ``R^2 >= min_r2``; the ``ceil(fraction * N)`` (capped) whose ``(a, b)`` moved least since the last
  event (``sqrt(da^2 + db^2)``, as in CMD) are chosen; the ``keep_sensitive`` most sensitive of them
  stay trainable this round. With ``granularity="tensor"`` whole tensors are chosen instead:
  those without a reference whose mean ``R^2`` passes the floor, by mean drift, as long as they fit
  in the budget, less the ``keep_sensitive`` most sensitive by mean sensitivity. With
  ``max_amplification`` A > 0 (scalar granularity) each mode takes only its steadiest candidates
  whose ``sum a^2``, with its members embedded already, stays at most A^2: one step ``dr`` of a
  reference then moves its members by at most ``A |dr|`` in L2. The rest are embedded by the
  variant:

  - ``"true"``: snap onto the line, ``theta_i := a_i r + b_i``;
  - ``"dummy"``: keep the value, ``theta_i := a_i (r - r_e) + theta_i(t_e)``, i.e. the line through
    the current point, so the loss does not jump;
  - ``"sensitivity"`` (default): true for the ``sensitivity_quantile`` share of them with the
    lowest sensitivity, dummy for the rest.

  Both kinds freeze ``(a_i, b_i)`` (dummy: ``b_i = theta_i(t_e) - a_i r(t_e)``) and follow the
  reference from then on.
* **Embedded scalars** receive no gradient (the embedding table zeroes it after backward, so
  clipping and the optimizer never see it), have no optimizer state (the optimizer holds only the
  trainable scalars of a tensor embedded in part, packed: :mod:`.optimizer`), and are recomputed
  from the references after every optimizer step. A tensor whose scalars are all embedded leaves
  the optimizer's param groups and autograd (``requires_grad=False``): its weight gradient is no
  longer computed. References are never embedded.
  With ``route_gradients`` each reference first receives its mode's gradient (see
  :mod:`.embedding`).
* **Release** (``release_beyond`` > 0). At each event, before choosing, the embedded scalars whose
  reference now lies more than ``release_beyond`` widths outside the range their line was fitted
  on (:meth:`STDET.extrapolation`) become trainable again: their second moments take the median
  of their tensor's trained scalars, their momentum zero; a tensor that had left the optimizer
  comes back at its place (with fresh state). Their lines keep being refitted on the whole
  trajectory, so they may be embedded again with a line that covers the longer range.
* **Saturation.** Once the cap is reached nothing can change (embedding is final), so observations,
  sensitivity and events stop; each step then only recomputes the embedded scalars. With release,
  nothing is final: observations and events go on.
* **Health** (:meth:`STDET.health`, :mod:`.health`): the members and leverage per reference, the
  extrapolation of the lines, the drift of the embedded scalars; the trainer logs it at every
  event and validation.

The pieces, each in its own module: the configuration (:mod:`.config`), the pure selection rules
(:mod:`.selection`), the sensitivity sums (:mod:`.sensitivity`), which scalars are embedded on
which frozen line (:mod:`.lines`, with the records of where each line was fitted,
:mod:`.records`), the embedding table that ties the embedded scalars to their references
(:mod:`.embedding`, the torch twin of ``nqm.embedding.Tie``), the optimizer's packed state
(:mod:`.optimizer`) and the health (:mod:`.health`). :class:`STDET` holds the schedule of
observations and events, and composes the state the pieces save.

STDET is two update rules, in this order around an SMA (:func:`lic_train.rules.chain_of`; with an
SMA with feedback, ``embedding_after_feedback`` follows the SMA)::

    Chain(embedding=stdet.embedding, sma=sma, stdet=stdet)

``stdet.embedding`` zeroes the embedded scalars' gradients after backward and puts them back on
their lines right after the optimizer step, so that the SMA samples them there; ``stdet`` then
accumulates sensitivity (after backward) and observes the trajectory and embeds on schedule (after
the step). Under ``DistributedDataParallel`` the fit and every event are decided on rank 0 and
broadcast, so all ranks embed the same scalars.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Protocol

import torch
from torch import nn

from lic_train.rules import distributed
from lic_train.rules.modes import Modes
from lic_train.rules.parameters import network_parameters
from lic_train.rules.stdet import health, selection
from lic_train.rules.stdet import optimizer as edits
from lic_train.rules.stdet.config import DUMMY, TRAINABLE, STDETConfig
from lic_train.rules.stdet.embedding import EmbeddingTable
from lic_train.rules.stdet.lines import FrozenLines
from lic_train.rules.stdet.sensitivity import Sensitivity


class Trajectory(Protocol):
    """What CMD observes: the values of named parameters (an :class:`~lic_train.rules.sma.SMA`'s
    average, say), and their dtype (None: each parameter's)."""

    dtype: torch.dtype | None

    def tensors(self, names: list[str]) -> list[torch.Tensor]: ...


class STDET:
    """STDET for the network parameters of ``model`` trained by ``optimizer``.

    Args:
        model: the module (a ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer: any ``torch.optim`` optimizer over (a superset of) the network parameters.
        config: :class:`~lic_train.rules.stdet.config.STDETConfig`.
        trajectory: a trajectory source (an SMA: its average, the raw weights before its first
            sample), which CMD observes when ``config.trajectory == "sma"``; the raw weights are
            observed otherwise, or when it is None. Embedded scalars are always computed from the
            raw references.
        device: where the CMD bookkeeping lives (default: the CPU, to spare accelerator memory).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: STDETConfig | None = None,
        *,
        trajectory: Trajectory | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config or STDETConfig()
        self.optimizer = optimizer
        self.trajectory = trajectory if self.config.trajectory == "sma" else None
        named = [(name, p) for name, p in network_parameters(model) if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters for STDET to track")
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.total = sum(p.numel() for _, p in model.named_parameters())
        self.embedding = EmbeddingTable(self.params, route_gradients=self.config.route_gradients)
        self.packing = edits.Packing(optimizer, self.params)
        self.offsets = self.embedding.offsets
        self.device = torch.device(device)
        self.modes = _modes(self.config, self.params, self.trajectory, self.device)
        self.size = self.modes.size
        self.sensitivity_sums = Sensitivity(self.params)
        self.lines = FrozenLines(self.size, self.device)  # which scalars are embedded, on what
        self.steps = 0
        self.events = 0
        self._last_a = self._last_b = None  # (a, b) at the fit or the last event
        self._smallest_free: float | None = None  # cache of _smallest_free_tensor()

    # --- the UpdateRule protocol ----------------------------------------------------------------

    @torch.no_grad()
    def after_backward(self) -> None:
        """Accumulate sensitivity on the steps whose weights will be observed."""
        if not self.active:
            return
        if self.modes.fitted and (self.steps + 1) % self.config.snapshot_every == 0:
            self.sensitivity_sums.accumulate()

    @torch.no_grad()
    def after_step(self) -> None:
        """Observe the trajectory and embed when an event is due (the embedding table has put the
        embedded scalars back on their lines already)."""
        self.steps += 1
        if self.embedding.steps != self.steps:
            raise RuntimeError(
                "STDET's embedding table did not run before it in this step: chain them as "
                "lic_train.rules.chain_of(sma=..., stdet=stdet) does (embedding first)"
            )
        if not self.active:
            return
        if self.steps % self.config.snapshot_every == 0:
            was_fitted = self.modes.fitted
            observed = (
                self.params if self.trajectory is None else self.trajectory.tensors(self.names)
            )
            self.modes.observe(observed)
            if self.modes.fitted and not was_fitted:
                self.embedding.set_references(self.modes.reference.tolist())
                self._last_a, self._last_b = self.modes.coefficients()
        warm = self.steps - self.config.warmup
        if self.modes.fitted and warm > 0 and warm % self.config.every == 0:
            self._event()

    # --- events ---------------------------------------------------------------------------------

    def _event(self) -> None:
        cfg = self.config
        a, b = self.modes.coefficients()
        drift = torch.hypot(a - self._last_a, b - self._last_b)
        self._last_a, self._last_b = a, b
        self.events += 1
        record = self.lines.records.add(self.reference_values(), self.modes.low, self.modes.high)
        released = self._release() if cfg.release_beyond > 0 else None
        budget = min(math.ceil(cfg.fraction * self.size), self._cap_left())
        new_kind = torch.zeros_like(self.lines.kind)
        if budget > 0 and distributed.rank() == 0:
            new_kind = self._choose(drift, budget, a)
        distributed.broadcast_from_rank0(new_kind)
        if budget <= 0 or not bool((new_kind != TRAINABLE).any()):
            if released is not None and bool(released.any()):
                self._tie(released)
                self.embedding.materialize()
            self.lines.records.forget_unused()
            return
        theta = torch.cat(
            [p.detach().reshape(-1).to(self.device, torch.float64) for p in self.params]
        )
        r = self.reference_values()[self.modes.mode]
        # dummy: the line through the current point, so the loss does not jump
        b_frozen = torch.where(new_kind == DUMMY, theta - a * r, b)
        chosen = self.lines.embed(new_kind, a, b_frozen, record)
        distributed.broadcast_from_rank0(self.lines.a, self.lines.b)
        self._smallest_free = None
        self.sensitivity_sums.reset()
        if released is not None:
            released &= ~chosen  # released and embedded again at once: fresh, with a new line
        self.lines.records.forget_unused()
        self._tie(released)
        self.embedding.materialize()

    def _release(self) -> torch.Tensor:
        """Make trainable again the embedded scalars whose reference left the range their line was
        fitted on by more than ``release_beyond`` widths; returns them as a mask (N,). Decided on
        rank 0 and broadcast."""
        released = self.extrapolation() > self.config.release_beyond
        distributed.broadcast_from_rank0(released)
        self.lines.release(released)
        self._smallest_free = None
        return released

    def _choose(self, drift: torch.Tensor, budget: int, a: torch.Tensor) -> torch.Tensor:
        """The kind (TRUE/DUMMY) of each scalar embedded at this event, TRAINABLE elsewhere."""
        cfg = self.config
        sensitivity = self.sensitivity()
        common = {
            "budget": budget, "min_r2": cfg.min_r2, "keep_sensitive": cfg.keep_sensitive,
            "sensitivity": sensitivity,
        }  # fmt: skip
        embedded, r2 = self.lines.embedded, self.modes.r_squared()
        if cfg.granularity == "tensor":
            steady = selection.steadiest_tensors(
                drift, r2, embedded, offsets=self.offsets,
                holding_references=self._holding_references(), **common,
            )  # fmt: skip
        else:
            leverage = None
            if cfg.max_amplification > 0:
                carried = self.lines.leverage_squared(self.modes.mode, self.modes.reference.numel())
                leverage = selection.Leverage(
                    a, self.modes.mode.long(), carried, cfg.max_amplification
                )
            steady = selection.steadiest_scalars(
                drift, r2, embedded, references=self.modes.reference, leverage=leverage, **common
            )
        return selection.kinds(
            steady, sensitivity, size=self.size, variant=cfg.variant,
            quantile=cfg.sensitivity_quantile,
        )  # fmt: skip

    def _tie(self, released: torch.Tensor | None = None) -> None:
        """Rebuild the embedding table, and have the optimizer hold the trainable scalars of each
        tensor whose set changed (:meth:`~.optimizer.Packing.hold`; ``released``: the scalars
        given back to training at this event, which get a typical optimizer state)."""
        self.embedding.set(self.lines.kind, self.lines.a, self.lines.b, self.modes.mode)
        self.packing.hold(self.lines.kind == TRAINABLE, self.offsets, released)

    def _holding_references(self) -> set[int]:
        return {self.embedding.tensor_of(r) for r in self.modes.reference.tolist()}

    @property
    def active(self) -> bool:
        """Whether STDET still observes, accumulates sensitivity and holds events: until it is
        saturated, or always when it may release scalars (``release_beyond > 0``)."""
        return self.config.release_beyond > 0 or not self.saturated

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
            busy = self._holding_references() | self.packing.removed
            sizes = [
                self.offsets[i + 1] - self.offsets[i]
                for i in range(len(self.params))
                if i not in busy
            ]
            self._smallest_free = min(sizes, default=math.inf)
        return self._smallest_free

    def _cap_left(self) -> int:
        return math.floor(self.config.max_embedded * self.size) - self.lines.count

    # --- reporting ------------------------------------------------------------------------------

    def sensitivity(self) -> torch.Tensor:
        """Mean ``|theta * g|`` per tracked scalar since the last event, float64 (N,) (zeros before
        any observation)."""
        return self.sensitivity_sums.mean(self.device)

    def reference_values(self) -> torch.Tensor:
        """Current raw values of the references, float64 (M',) on the bookkeeping device."""
        return self.embedding.references().to(self.device, torch.float64)

    def extrapolation(self) -> torch.Tensor:
        """How far each embedded scalar's reference lies outside the range its line was fitted on,
        in widths of that range, float64 (N,) (:func:`.health.extrapolation`)."""
        if not self.modes.fitted:  # no references yet, and nothing embedded
            return torch.zeros(self.size, dtype=torch.float64, device=self.device)
        return health.extrapolation(self.lines, self.modes, self.reference_values())

    def health(self) -> dict[str, float]:
        """The numbers that show an embedding going bad before the loss does: the share embedded,
        still references, the largest share and leverage behind one reference, the largest
        extrapolation, the embedded scalars' drift (:func:`.health.health`); empty before the
        fit."""
        if not self.modes.fitted:
            return {}
        return health.health(self.lines, self.modes, self.reference_values())

    def trainable_fraction(self) -> float:
        """Share of all the model's parameters (``quantiles`` included) still trained."""
        return 1.0 - self.lines.count / self.total

    def removed_tensors(self) -> list[str]:
        """Names of the tensors that left the optimizer (fully embedded)."""
        return [self.names[i] for i in sorted(self.packing.removed)]

    def nbytes(self) -> int:
        """Bookkeeping memory in bytes (modes, embedding table, sensitivity), all devices."""
        last = [] if self._last_a is None else [self._last_a, self._last_b]
        return (
            self.modes.nbytes() + self.lines.nbytes() + self.sensitivity_sums.nbytes()
            + self.embedding.nbytes() + self.packing.nbytes()
            + sum(t.numel() * t.element_size() for t in last)
        )  # fmt: skip

    # --- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        last = (self._last_a, self._last_b)
        return {
            "config": asdict(self.config),
            "names": list(self.names),
            "steps": self.steps,
            "events": self.events,
            "modes": self.modes.state_dict(),
            "last_a": None if last[0] is None else last[0].clone(),
            "last_b": None if last[1] is None else last[1].clone(),
            **self.lines.state_dict(),
            **self.sensitivity_sums.state_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a fresh STDET built on the same model and optimizer.

        Fully embedded tensors leave the optimizer again, so load this **before**
        ``optimizer.load_state_dict`` (whose param groups must match the saved ones).
        """
        if not state:
            raise ValueError("no saved STDET state to restore")
        if state["config"] != asdict(self.config):
            raise ValueError(
                f"STDET state was saved with config {state['config']}, this STDET has "
                f"{asdict(self.config)}"
            )
        if state["names"] != self.names:
            raise ValueError("STDET state tracks other parameters than this model's")
        self.steps = self.embedding.steps = int(state["steps"])
        self.events = int(state["events"])
        self.modes.load_state_dict(state["modes"])
        if self.modes.fitted:
            self.embedding.set_references(self.modes.reference.tolist())
        self.lines.load_state_dict(state)
        self._smallest_free = None
        last = (state["last_a"], state["last_b"])
        self._last_a, self._last_b = (
            (None, None) if last[0] is None else tuple(t.to(self.device).clone() for t in last)
        )
        self.sensitivity_sums.load_state_dict(state)
        self._tie()
        self.embedding.materialize()


def _modes(
    config: STDETConfig,
    params: list[nn.Parameter],
    trajectory: Trajectory | None,
    device: torch.device,
) -> Modes:
    """CMD over the tracked scalars, as ``config`` sets it up."""
    float64 = any(p.dtype == torch.float64 for p in params) or (
        trajectory is not None and trajectory.dtype == torch.float64
    )
    return Modes(
        [p.numel() for p in params],
        snapshots=config.snapshots,
        modes=config.modes,
        samples=config.samples,
        seed=config.seed,
        device=device,
        # float64 weights (or a float64 average) keep a float64 history: rounding it to float32
        # would distort the fit that the later, exact observations continue.
        snapshot_dtype=torch.float64 if float64 else torch.float32,
        live_only=config.live_references,
    )
