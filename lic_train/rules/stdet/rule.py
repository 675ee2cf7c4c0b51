"""STDET, sensitivity-aware true and dummy embedding training (README, "The update rules for torch
models").

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
* **Health** (:meth:`STDET.health`): the members and leverage per reference, the extrapolation
  of the lines, the drift of the embedded scalars; the trainer logs it at every event and
  validation.

The pieces, each in its own module: the configuration (:mod:`.config`), the pure selection rules
(:mod:`.selection`), the sensitivity sums (:mod:`.sensitivity`), the embedding table that ties the
embedded scalars to their references (:mod:`.embedding`, the torch twin of ``nqm.embedding.Tie``),
the optimizer's packed state (:mod:`.optimizer`) and the records of where each line was fitted
(:mod:`.records`). :class:`STDET` holds the schedule and the state.

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
from lic_train.rules.modes import STILL, Modes
from lic_train.rules.parameters import network_parameters
from lic_train.rules.stdet import optimizer as edits
from lic_train.rules.stdet import selection
from lic_train.rules.stdet.config import DUMMY, TRAINABLE, TRUE, STDETConfig
from lic_train.rules.stdet.embedding import EmbeddingTable
from lic_train.rules.stdet.records import EventRecords
from lic_train.rules.stdet.sensitivity import Sensitivity

FAR = 1e6  # the extrapolation reported beyond a range of width 0 (finite, for JSON)


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
        # Trainable scalars of each tensor as the optimizer holds it (all, at first).
        self._held = [p.numel() for p in self.params]
        self.offsets = self.embedding.offsets
        self.device = torch.device(device)
        float64 = any(p.dtype == torch.float64 for p in self.params) or (
            self.trajectory is not None and self.trajectory.dtype == torch.float64
        )
        self.modes = Modes(
            [p.numel() for p in self.params],
            snapshots=self.config.snapshots,
            modes=self.config.modes,
            samples=self.config.samples,
            seed=self.config.seed,
            device=self.device,
            # float64 weights (or a float64 average) keep a float64 history: rounding it to float32
            # would distort the fit that the later, exact observations continue.
            snapshot_dtype=torch.float64 if float64 else torch.float32,
            live_only=self.config.live_references,
        )
        self.size = self.modes.size
        self.sensitivity_sums = Sensitivity(self.params)
        self.steps = 0
        self.events = 0
        self.kind = torch.zeros(self.size, dtype=torch.uint8, device=self.device)
        self.frozen_a = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self.frozen_b = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self._last_a = self._last_b = None  # (a, b) at the fit or the last event
        self.records = EventRecords(self.size, self.device)  # where each line was fitted
        self._embedded_total = 0
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
        record = self.records.add(self.reference_values(), self.modes.low, self.modes.high)
        released = self._release() if cfg.release_beyond > 0 else None
        budget = min(math.ceil(cfg.fraction * self.size), self._cap_left())
        new_kind = torch.zeros_like(self.kind)
        if budget > 0 and distributed.rank() == 0:
            new_kind = self._choose(drift, budget, a)
        distributed.broadcast_from_rank0(new_kind)
        if budget <= 0 or not bool((new_kind != TRAINABLE).any()):
            if released is not None and bool(released.any()):
                self._tie(released)
                self.embedding.materialize()
            self.records.forget_unused()
            return
        chosen = new_kind != TRAINABLE
        theta = torch.cat(
            [p.detach().reshape(-1).to(self.device, torch.float64) for p in self.params]
        )
        r = self.reference_values()[self.modes.mode]
        # dummy: the line through the current point, so the loss does not jump
        b_frozen = torch.where(new_kind == DUMMY, theta - a * r, b)
        self.frozen_a[chosen] = a[chosen]
        self.frozen_b[chosen] = b_frozen[chosen]
        distributed.broadcast_from_rank0(self.frozen_a, self.frozen_b)
        self.kind[chosen] = new_kind[chosen]
        self.records.embed(chosen, record)
        self._embedded_total = int((self.kind != TRAINABLE).sum())
        self._smallest_free = None
        self.sensitivity_sums.reset()
        if released is not None:
            released &= ~chosen  # released and embedded again at once: fresh, with a new line
        self.records.forget_unused()
        self._tie(released)
        self.embedding.materialize()

    def _release(self) -> torch.Tensor:
        """Make trainable again the embedded scalars whose reference left the range their line was
        fitted on by more than ``release_beyond`` widths; returns them as a mask (N,). Decided on
        rank 0 and broadcast."""
        released = self.extrapolation() > self.config.release_beyond
        distributed.broadcast_from_rank0(released)
        self.kind[released] = TRAINABLE
        self.records.release(released)
        self._embedded_total = int((self.kind != TRAINABLE).sum())
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
        embedded, r2 = self.kind != TRAINABLE, self.modes.r_squared()
        if cfg.granularity == "tensor":
            steady = selection.steadiest_tensors(
                drift, r2, embedded, offsets=self.offsets,
                holding_references=self._holding_references(), **common,
            )  # fmt: skip
        else:
            leverage = None
            if cfg.max_amplification > 0:
                mode = self.modes.mode.long()
                carried = torch.zeros(self.modes.reference.numel(), dtype=torch.float64,
                                      device=self.device)  # fmt: skip
                carried.index_add_(0, mode[embedded], self.frozen_a[embedded].square())
                leverage = selection.Leverage(a, mode, carried, cfg.max_amplification)
            steady = selection.steadiest_scalars(
                drift, r2, embedded, references=self.modes.reference, leverage=leverage, **common
            )
        return selection.kinds(
            steady, sensitivity, size=self.size, variant=cfg.variant,
            quantile=cfg.sensitivity_quantile,
        )  # fmt: skip

    def _tie(self, released: torch.Tensor | None = None) -> None:
        """Rebuild the embedding table, and have the optimizer hold the trainable scalars of each
        tensor whose set changed (:class:`~.optimizer.Packing`; ``released``: the scalars given
        back to training at this event, which get a typical optimizer state)."""
        self.embedding.set(self.kind, self.frozen_a, self.frozen_b, self.modes.mode)
        for i, p in enumerate(self.params):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            trainable = self.kind[lo:hi] == TRAINABLE
            count = int(trainable.sum())
            given_back = None if released is None else released[lo:hi]
            if count != self._held[i] or (given_back is not None and bool(given_back.any())):
                self.packing.set(p, trainable, given_back)
                self._held[i] = count

    @property
    def _removed(self) -> set[int]:
        """The tensors embedded whole (out of the optimizer and autograd)."""
        return {i for i, held in enumerate(self._held) if held == 0}

    def _holding_references(self) -> set[int]:
        return {self.embedding.tensor_of(r) for r in self.modes.reference.tolist()}

    # --- reporting ------------------------------------------------------------------------------

    def sensitivity(self) -> torch.Tensor:
        """Mean ``|theta * g|`` per tracked scalar since the last event, float64 (N,) (zeros before
        any observation)."""
        return self.sensitivity_sums.mean(self.device)

    def reference_values(self) -> torch.Tensor:
        """Current raw values of the references, float64 (M',) on the bookkeeping device."""
        return self.embedding.references().to(self.device, torch.float64)

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
            holds = self._holding_references()
            sizes = [
                self.offsets[i + 1] - self.offsets[i]
                for i in range(len(self.params))
                if i not in holds and i not in self._removed
            ]
            self._smallest_free = min(sizes, default=math.inf)
        return self._smallest_free

    def _cap_left(self) -> int:
        return math.floor(self.config.max_embedded * self.size) - self._embedded_total

    def _at_embedding(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every embedded scalar (flat indices ``where``): its reference's raw value now, and
        at its event, and the range its line was fitted on then (low, high); float64."""
        where = torch.nonzero(self.kind != TRAINABLE).squeeze(1)
        mode = self.modes.mode[where].long()
        then, low, high = self.records.at(where, mode)
        return where, self.reference_values()[mode], then, torch.stack([low, high])

    def extrapolation(self) -> torch.Tensor:
        """How far each embedded scalar's reference now lies outside the range its line was
        fitted on (observed reference values up to the embedding event), in widths of that
        range: ``max(low - r, r - high, 0) / (high - low)``; float64 (N,), 0 for trainable
        scalars; ``FAR`` (1e6) where the range had width 0 and the reference left it. ``r`` is
        the raw reference (what the embedded scalars follow) and the range is of what CMD
        observed: with ``trajectory="sma"`` the SMA average, which lags a drifting reference, so
        the extrapolation then reads a little high."""
        out = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        if self._embedded_total == 0:
            return out
        where, now, _, (low, high) = self._at_embedding()
        out[where] = _widths_beyond(now, low, high)
        return out

    def health(self) -> dict[str, float]:
        """STDET's health, the numbers that show an embedding going bad before the loss does
        (issue 15); empty before the fit. All floats:

        * ``embedded``: share of the tracked scalars embedded;
        * ``still_references``: references whose observed range is still (at most
          :data:`~lic_train.rules.modes.STILL` of their magnitude): lines fitted on them are
          meaningless;
        * ``members_max``: the largest share of the tracked scalars embedded on one reference;
        * ``leverage_max``: the largest ``||a||_2`` over one reference's embedded members, the
          L2 distance they move per unit step of the reference;
        * ``extrapolation_max``: the largest :meth:`extrapolation`;
        * ``embedded_drift``: ``||w_E - w_E(t_e)|| / ||w_E(t_e)||``, how far the embedded scalars
          moved since their embedding, relative to their values then (0: none embedded).
        """
        if not self.modes.fitted:
            return {}
        m = self.modes.reference.numel()
        embedded = self.kind != TRAINABLE
        mode = self.modes.mode[embedded].long()
        a = self.frozen_a[embedded]
        members = torch.bincount(mode, minlength=m)
        leverage = torch.zeros(m, dtype=torch.float64, device=self.device)
        leverage.index_add_(0, mode, a.square())
        width = self.modes.high - self.modes.low
        scale = torch.maximum(self.modes.high.abs(), self.modes.low.abs())
        health = {
            "embedded": self._embedded_total / self.size,
            "still_references": float(int((width <= STILL * scale).sum())),
            "members_max": int(members.max()) / self.size,
            "leverage_max": float(leverage.max().sqrt()),
            "extrapolation_max": 0.0,
            "embedded_drift": 0.0,
        }
        if self._embedded_total:
            where, now, then, (low, high) = self._at_embedding()
            health["extrapolation_max"] = float(_widths_beyond(now, low, high).max())
            value_then = torch.addcmul(self.frozen_b[where], self.frozen_a[where], then)
            moved = self.frozen_a[where] * (now - then)
            health["embedded_drift"] = float(moved.norm() / value_then.norm().clamp(min=1e-30))
        return health

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
        """Bookkeeping memory in bytes (modes, embedding table, sensitivity), all devices."""
        tensors = [self.kind, self.frozen_a, self.frozen_b]
        if self._last_a is not None:
            tensors += [self._last_a, self._last_b]
        own = sum(t.numel() * t.element_size() for t in tensors)
        return (
            self.modes.nbytes() + own + self.sensitivity_sums.nbytes() + self.embedding.nbytes()
            + self.packing.nbytes() + self.records.nbytes()
        )  # fmt: skip

    # --- state ----------------------------------------------------------------------------------

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
            **self.records.state_dict(),
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
        self.kind = state["kind"].to(self.device).clone()
        self._embedded_total = int((self.kind != TRAINABLE).sum())
        self._smallest_free = None
        self.frozen_a = state["frozen_a"].to(self.device).clone()
        self.frozen_b = state["frozen_b"].to(self.device).clone()
        last = (state["last_a"], state["last_b"])
        self._last_a, self._last_b = (
            (None, None) if last[0] is None else tuple(t.to(self.device).clone() for t in last)
        )
        self.records.load_state_dict(state)
        self.sensitivity_sums.load_state_dict(state)
        self._tie()
        self.embedding.materialize()


def _widths_beyond(now: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``max(low - now, now - high, 0) / (high - low)`` elementwise, ``FAR`` where the range has
    width 0 and ``now`` left it (capped at ``FAR``)."""
    beyond = torch.maximum(low - now, now - high).clamp_(min=0.0)
    width = high - low
    ratio = torch.where(width > 0, beyond / torch.where(width > 0, width, 1.0), beyond * FAR)
    return ratio.clamp_(max=FAR)
