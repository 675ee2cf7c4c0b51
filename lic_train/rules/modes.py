"""Correlated modes of a training trajectory (CMD; Brokman et al., ICLR 2024; docs/rules.md).

The tracked scalars are the concatenation of some tensors (``N`` scalars in all). The owner calls
:meth:`Modes.observe` with their current values at a fixed cadence:

1. The first ``snapshots`` (T) observations are stored (an ``N x T`` history on ``snapshot_device``,
   ``N * T * itemsize`` bytes: float32 on the CPU by default).
2. At the T-th: sample ``samples`` (K) scalars balanced across tensors (:func:`balanced_sample`);
   ``|Pearson|`` correlation of their trajectories; complete-linkage clustering of the distance
   ``1 - |rho|`` (``scipy.cluster.hierarchy``) cut at (at most) ``modes`` (M) clusters, numbered by size;
   the reference of a cluster is its member with the highest mean in-cluster ``|rho|``. Every scalar
   then joins the reference it correlates with most (``|rho|``, so ``a`` may be negative).
   The history is dropped. With ``live_only`` the sample is first cut to the scalars that moved
   (a trajectory whose range is at most ``STILL`` times its largest magnitude is *still*): a still
   scalar correlates with nothing, becomes a cluster of its own and wastes a mode on a reference
   that cannot move (on the time-to-quality benchmark's hyperprior, 2.3 of 10 references on
   average never moved: docs/results/stdet-stability.md). Still scalars still join a reference;
   their line is flat (``a = 0``), so embedding them fixes a constant.
3. From then on each observation updates exact streaming sums; :meth:`coefficients` returns the
   least-squares line ``w_i ~ a_i r_m(i) + b_i`` over *all* observations so far:
   ``a = (n Swr - Sw Sr) / (n Srr - Sr^2)``, ``b = (Sw - a Sr) / n`` (ordinary least squares).

Sums are float64 and shifted by the values at the fit (``w0``; the reference's ``r0``) so that a
drift small next to the weight does not cancel: ``b = b' + w0 - a r0``. Memory after the fit:
``4 * 8 + 4 = 36`` bytes per scalar (``w0, Sw, Sww, Swr`` in float64 and an int32 mode) plus
``6 * 8`` bytes per mode (the sums and the range ``[low, high]`` the references were observed in),
on ``device``; nothing grows with the number of observations.

This module differs from the CMD code in one respect, stated here: clusters are formed on the
distance ``1 - |rho|`` itself rather than on Euclidean distances between rows of ``|rho|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from lic_dynamics import validation
from lic_train.rules import distributed

# Elements of one float64 temporary of the assignment (rows x max(T, M)): 4 MB. At 1 << 20 rows
# they made STDET's peak memory 1.7x Adam's on a 0.3M-parameter model.
_BLOCK = 1 << 19
STILL = 1e-5  # relative range under which a trajectory counts as still (float32 rounding: ~1e-7)


def balanced_sample(sizes: Sequence[int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct flat indices into the concatenation of tensors of ``sizes``, sorted.

    Half the budget is spread evenly over the tensors, half in proportion to their sizes, and any
    shortfall (small tensors) goes to the tensors with the most room, so that small tensors such as
    biases are represented next to large convolutions. Uniform without replacement inside a tensor.
    Every index when ``count >= sum(sizes)``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if count >= total:
        return np.arange(total)
    even = np.minimum(count // (2 * len(sizes)), sizes)
    proportional = np.minimum((sizes * (count - count // 2)) // total, sizes - even)
    take = even + proportional
    while take.sum() < count:  # shortfall: fill the tensors with the most room first
        room = sizes - take
        i = int(np.argmax(room))
        take[i] += min(int(room[i]), count - int(take.sum()))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    picked = [
        offset + rng.choice(size, size=n, replace=False)
        for offset, size, n in zip(offsets, sizes, take, strict=True)
        if n
    ]
    return np.sort(np.concatenate(picked))


def abs_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|Pearson correlation|`` between the rows of ``x`` (n, T) and of ``y`` (m, T), shape (n, m);
    0 where a row is constant."""
    xc = x - x.mean(dim=1, keepdim=True)
    yc = y - y.mean(dim=1, keepdim=True)
    xn = xc.norm(dim=1, keepdim=True)
    yn = yc.norm(dim=1, keepdim=True)
    xc = torch.where(xn > 0, xc / xn, torch.zeros_like(xc))
    yc = torch.where(yn > 0, yc / yn, torch.zeros_like(yc))
    return (xc @ yc.T).abs().clamp_(max=1.0)


def still(x: torch.Tensor) -> torch.Tensor:
    """Whether each row of ``x`` (n, T) is still: its range at most ``STILL`` times its largest
    magnitude (exactly constant rows included), bool (n,)."""
    spread = x.amax(dim=1) - x.amin(dim=1)
    return spread <= STILL * x.abs().amax(dim=1)


class Modes:
    """Modes, references and affine coefficients of ``N = sum(sizes)`` tracked scalars.

    Args:
        sizes: number of scalars of each tracked tensor, in the order :meth:`observe` receives them.
        snapshots: T >= 3 observations before the fit.
        modes: M >= 1, the most clusters to cut (fewer when the sample has fewer distinct ones).
        samples: K >= 2 scalars sampled for the clustering (all of them when K >= N).
        seed: seed of the sample (the same on every rank).
        device: where the streaming sums live (float64).
        snapshot_device, snapshot_dtype: where and how the warm-up history is kept.
        live_only: cluster only the sampled scalars that moved (see the module's docstring).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        snapshots: int = 10,
        modes: int = 10,
        samples: int = 1000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        snapshot_device: torch.device | str = "cpu",
        snapshot_dtype: torch.dtype = torch.float32,
        live_only: bool = False,
    ) -> None:
        self.sizes = [validation.integer("sizes[i]", s, minimum=1) for s in sizes]
        if not self.sizes:
            raise ValueError("sizes must name at least one tensor, got an empty list")
        self.snapshots = validation.integer("snapshots", snapshots, minimum=3)
        self.modes = validation.integer("modes", modes, minimum=1)
        self.samples = validation.integer("samples", samples, minimum=2)
        self.seed = validation.integer("seed", seed, minimum=0)
        self.device = torch.device(device)
        self.snapshot_device = torch.device(snapshot_device)
        self.snapshot_dtype = snapshot_dtype
        self.live_only = bool(live_only)
        self.size = sum(self.sizes)
        self.observations = 0
        self._history: list[torch.Tensor] = []
        self.reference = torch.empty(0, dtype=torch.long)  # (M',) flat indices
        self.mode = torch.empty(0, dtype=torch.int32)  # (N,) index into reference

    @property
    def fitted(self) -> bool:
        return self.reference.numel() > 0

    def flatten(self, values: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
        """The tracked tensors as one float64 vector of length N on ``device``."""
        if len(values) != len(self.sizes):
            raise ValueError(f"observe expects {len(self.sizes)} tensors, got {len(values)}")
        flat = [v.detach().reshape(-1) for v in values]
        for i, (v, size) in enumerate(zip(flat, self.sizes, strict=True)):
            if v.numel() != size:
                raise ValueError(f"tensor {i} has {v.numel()} scalars, expected {size}")
        return torch.cat([v.to(device, torch.float64) for v in flat])

    @torch.no_grad()
    def observe(self, values: Sequence[torch.Tensor]) -> None:
        """Record one point of the trajectory (a history column before the fit, sums after)."""
        if not self.fitted:
            w = self.flatten(values, self.snapshot_device).to(self.snapshot_dtype)
            self._history.append(w)
            self.observations += 1
            if self.observations == self.snapshots:
                self._fit()
            return
        self._accumulate(self.flatten(values, self.device))
        self.observations += 1

    def _rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of the history as float64 (stop - start, T) on ``device``."""
        return torch.stack([h[start:stop] for h in self._history], dim=1).to(
            self.device, torch.float64
        )

    def _fit(self) -> None:
        if distributed.rank() == 0:
            reference, mode = self._cluster_and_assign()
        else:
            reference = torch.empty(0, dtype=torch.long)
            mode = torch.zeros(self.size, dtype=torch.int32, device=self.device)
        padded = torch.full((self.modes,), -1, dtype=torch.long, device=self.device)
        padded[: reference.numel()] = reference
        distributed.broadcast_from_rank0(padded, mode)
        self.reference = padded[padded >= 0]
        self.mode = mode
        self._start_sums()
        self._history = []

    def _cluster_and_assign(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(self.seed)
        sample = torch.from_numpy(balanced_sample(self.sizes, self.samples, rng))
        x = torch.stack([h[sample] for h in self._history], dim=1).to(self.device, torch.float64)
        if self.live_only:
            moving = still(x).logical_not_().cpu()
            if int(moving.sum()) >= 1:  # else every sampled scalar is still: keep them all
                sample, x = sample[moving], x[moving.to(x.device)]
        corr = abs_correlation(x, x)
        corr.fill_diagonal_(1.0)
        if sample.numel() < 2 or self.modes == 1:
            labels = np.zeros(sample.numel(), dtype=np.int64)
        else:
            distance = squareform((1.0 - corr).cpu().numpy(), checks=False)
            tree = linkage(distance, method="complete")
            labels = fcluster(tree, t=self.modes, criterion="maxclust") - 1
        # Number clusters by size (largest first; ties by first appearance) and pick references.
        ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
        order = ids[np.lexsort((first, -counts))]
        references = []
        for cluster in order:
            members = torch.from_numpy(np.flatnonzero(labels == cluster))
            mean_corr = corr[members][:, members].mean(dim=1)
            references.append(int(sample[members[int(torch.argmax(mean_corr))]]))
        reference = torch.tensor(references, dtype=torch.long, device=self.device)
        r = self._rows_at(reference)
        mode = torch.empty(self.size, dtype=torch.int32, device=self.device)
        chunk = max(1, _BLOCK // max(r.shape[0], r.shape[1]))
        for start in range(0, self.size, chunk):
            stop = min(start + chunk, self.size)
            mode[start:stop] = abs_correlation(self._rows(start, stop), r).argmax(dim=1)
        mode[reference] = torch.arange(reference.numel(), device=self.device, dtype=torch.int32)
        return reference, mode

    def _rows_at(self, index: torch.Tensor) -> torch.Tensor:
        cpu_index = index.to(self.snapshot_device)
        return torch.stack([h[cpu_index] for h in self._history], dim=1).to(
            self.device, torch.float64
        )

    def _start_sums(self) -> None:
        """Streaming sums over the stored history, shifted by the last column."""
        self.w0 = self._history[-1].to(self.device, torch.float64).clone()
        self.r0 = self.w0[self.reference].clone()
        self.low = self.high = self.r0.clone()
        zeros = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self.sum_w, self.sum_ww, self.sum_wr = zeros, zeros.clone(), zeros.clone()
        m = self.reference.numel()
        self.sum_r = torch.zeros(m, dtype=torch.float64, device=self.device)
        self.sum_rr = torch.zeros(m, dtype=torch.float64, device=self.device)
        self.count = 0
        for column in self._history:
            self._accumulate(column.to(self.device, torch.float64))

    def _accumulate(self, w: torch.Tensor) -> None:
        dw = w - self.w0
        dr = dw[self.reference]
        r = dr + self.r0
        self.low, self.high = torch.minimum(self.low, r), torch.maximum(self.high, r)
        self.sum_w += dw
        self.sum_ww.addcmul_(dw, dw)
        self.sum_wr.addcmul_(dw, dr[self.mode.long()])
        self.sum_r += dr
        self.sum_rr.addcmul_(dr, dr)
        self.count += 1

    def _centred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n^2`` times (Cov(w, r), Var(r), Var(w)) per scalar, over the observations."""
        if not self.fitted:
            raise RuntimeError(f"modes are fitted after {self.snapshots} observations")
        n = self.count
        mode = self.mode.long()
        sum_r, sum_rr = self.sum_r[mode], self.sum_rr[mode]
        cov = n * self.sum_wr - self.sum_w * sum_r
        var_r = (n * sum_rr - sum_r * sum_r).clamp_(min=0.0)
        var_w = (n * self.sum_ww - self.sum_w * self.sum_w).clamp_(min=0.0)
        return cov, var_r, var_w

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, b)``, float64 (N,): the least-squares line of every scalar on its reference over
        all observations. ``a = 0`` (and ``b`` the mean) where the reference was constant;
        references have ``a = 1, b = 0``."""
        cov, var_r, _ = self._centred()
        a = torch.where(var_r > 0, cov / torch.where(var_r > 0, var_r, 1.0), 0.0)
        mode = self.mode.long()
        b = (self.sum_w - a * self.sum_r[mode]) / self.count
        return a, b + self.w0 - a * self.r0[mode]

    def r_squared(self) -> torch.Tensor:
        """Coefficient of determination of each line, in [0, 1], float64 (N,): ``rho^2``; 1 for a
        constant scalar (the line is exact), 0 for a varying scalar on a constant reference."""
        cov, var_r, var_w = self._centred()
        both = (var_r > 0) & (var_w > 0)
        denom = torch.where(both, var_r * var_w, 1.0)
        r2 = torch.where(both, cov * cov / denom, torch.where(var_w > 0, 0.0, 1.0))
        return r2.clamp_(0.0, 1.0)

    def nbytes(self) -> int:
        """Bookkeeping memory in bytes: the history before the fit, the sums after."""
        tensors = [*self._history, self.reference, self.mode]
        if self.fitted:
            tensors += [self.w0, self.r0, self.sum_w, self.sum_ww, self.sum_wr]
            tensors += [self.sum_r, self.sum_rr, self.low, self.high]
        return sum(t.numel() * t.element_size() for t in tensors)

    _SUMS = ("w0", "r0", "sum_w", "sum_ww", "sum_wr", "sum_r", "sum_rr", "low", "high")

    def state_dict(self) -> dict:
        state = {
            "sizes": list(self.sizes),
            "snapshots": self.snapshots,
            "modes": self.modes,
            "samples": self.samples,
            "seed": self.seed,
            "live_only": self.live_only,
            "observations": self.observations,
            "history": [h.clone() for h in self._history],
            "reference": self.reference.clone(),
            "mode": self.mode.clone(),
        }
        if self.fitted:
            state["count"] = self.count
            state.update({key: getattr(self, key).clone() for key in self._SUMS})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of a Modes with the same configuration."""
        for key in ("sizes", "snapshots", "modes", "samples", "seed", "live_only"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"modes state has {key}={state[key]!r}, these modes have "
                    f"{key}={getattr(self, key)!r}"
                )
        self.observations = int(state["observations"])
        self._history = [
            h.to(self.snapshot_device, self.snapshot_dtype).clone() for h in state["history"]
        ]
        self.reference = state["reference"].to(self.device).clone()
        self.mode = state["mode"].to(self.device, torch.int32).clone()
        if self.fitted:
            self.count = int(state["count"])
            for key in self._SUMS:
                setattr(self, key, state[key].to(self.device, torch.float64).clone())
