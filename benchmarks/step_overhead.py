"""Per-step overhead of SMA and STDET on a small CompressAI model, against plain Adam.

What: seconds per training step of ``compressai.models.ScaleHyperprior(N=32, M=48)`` on batches of
4 crops of 128x128 (crops of ``skimage.data.astronaut()`` when scikit-image is installed, uniform
noise otherwise), with CompressAI's ``examples/train.py`` step: ``RateDistortionLoss(lmbda=1e-2)``,
Adam(lr 1e-4) on the network parameters, gradient clipping at norm 1.0, and a second Adam (lr 1e-3)
on the entropy bottleneck's ``quantiles`` with ``model.aux_loss()``. Five configurations, each with
its own deep copy of one seeded model and its own optimizers:

  adam         the step above;
  sma          + ``SMA(model, k=5, beta=0.9)``, which samples after ``optimizer.step()``;
  stdet        + SMA + ``STDET(..., trajectory=sma)`` at the default cap ``max_embedded=0.6``;
  stdet-whole  + SMA + STDET with ``max_embedded=0.95``: more scalars, and a few more small tensors,
               embedded (scalar granularity rarely completes a large tensor);
  stdet-tensor + SMA + STDET with ``granularity="tensor"`` at the default cap: whole tensors only,
               each of which leaves the optimizer and autograd.

The STDET configurations are timed *after embedding*: before timing, untimed steps run until STDET
is saturated (its cap reached; with whole tensors, no free tensor fits under it) or an event embeds
nothing new, with ``snapshot_every=2, snapshots=5, every=5, samples=1000, fraction=0.2`` (other
knobs at their defaults), or a step limit. A saturated STDET stops observing, so the timed steps
pay only for routing and zeroing the embedded gradients, the packed optimizer step and
recomputing the embedded scalars; with the default leverage bound STDET stays under its cap,
so observations and events go on while timing (the output says how many ran). Every
configuration runs the trainer's own step, ``lic_train.trainer.step.train_step``, with its rules
chained by ``lic_train.rules.chain_of`` (embedding table, SMA, STDET): the time measured is the
time ``lic-train fit`` spends.

How: after a warm-up, ``--rounds`` rounds; in each round every configuration runs ``--steps`` steps
in turn, the order rotating from round to round (interleaved, so drifts in machine speed hit all
alike). Each row gives the median seconds per step, the ratio to Adam (median of the per-round
ratios, with their min-max) and the goals: SMA <= 1.05x; STDET+SMA <= 1.10x, and < 1.0x once whole
tensors are embedded. A second table gives the memory (optimizer state of both optimizers, the SMA
average, STDET's bookkeeping) and the parameters still trained; a third splits one extra pass of
``--steps`` steps by phase (the mean per phase, outside the ratios). Keep ``--steps`` a multiple of
10 so that every block holds the same number of SMA samples, observations and events. Defaults
take about a minute on 2 idle CPU cores; other processes on the machine widen the min-max.

Run:  python benchmarks/step_overhead.py                 # defaults: 7 rounds of 20 steps, 128x128
      python benchmarks/step_overhead.py --quick         # smoke test, a few seconds: batch 2 of
                                                         # 64x64, 2 rounds of 2 steps, and STDET
                                                         # observing and embedding every step
      python benchmarks/step_overhead.py --device cuda   # torch.cuda.synchronize() around timings
It always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from _table import render  # benchmarks/ is on sys.path when a script runs
from torch import nn

from lic_train.rules import SMA, STDET, Chain, STDETConfig, chain_of
from lic_train.rules.parameters import is_quantiles
from lic_train.rules.stdet.optimizer import mask_of
from lic_train.trainer.step import train_step

with warnings.catch_warnings():  # torch.jit.script is deprecated; compressai uses it on import
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.losses import RateDistortionLoss
    from compressai.models import ScaleHyperprior

LR, AUX_LR, CLIP, LMBDA = 1e-4, 1e-3, 1.0, 1e-2
GOALS = {
    "sma": 1.05,
    "stdet": 1.10,
    "stdet-whole": 1.10,
    "stdet-tensor": 1.10,
}  # ratio to Adam, at most
WHOLE_GOAL = 1.0  # ratio to Adam, below, once whole tensors have left the optimizer
# The phases train_step marks; after_step is all the rules (embedding table, SMA, STDET) together.
PHASES = ("forward+loss", "backward", "after_backward", "clip", "step", "after_step", "aux")


def stdet_config(max_embedded: float, granularity: str, quick: bool = False) -> STDETConfig:
    """The benchmark's STDET knobs; ``quick`` fits and embeds within a dozen steps."""
    if quick:
        return STDETConfig(
            snapshot_every=1, snapshots=3, every=1, samples=200, modes=4, fraction=0.5,
            max_embedded=max_embedded, granularity=granularity,
        )  # fmt: skip
    return STDETConfig(
        snapshot_every=2, snapshots=5, every=5, samples=1000, fraction=0.2,
        max_embedded=max_embedded, granularity=granularity,
    )  # fmt: skip


@dataclass
class Setup:
    """One configuration: its model copy, optimizers, (optional) SMA and STDET, and their chain."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer
    sma: SMA | None = None
    stdet: STDET | None = None
    rules: Chain = field(default_factory=Chain)
    criterion: nn.Module = field(default_factory=lambda: RateDistortionLoss(lmbda=LMBDA))
    batch: int = 0  # index of the next batch


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return ScaleHyperprior(N=32, M=48)


def make_setup(
    name: str, base: nn.Module, device: torch.device, stdet_device: str, quick: bool = False
) -> Setup:
    model = copy.deepcopy(base).to(device).train()
    named = list(model.named_parameters())
    optimizer = torch.optim.Adam([p for n, p in named if not is_quantiles(n)], lr=LR)
    aux_optimizer = torch.optim.Adam([p for n, p in named if is_quantiles(n)], lr=AUX_LR)
    setup = Setup(name, model, optimizer, aux_optimizer)
    if name != "adam":
        setup.sma = SMA(model, k=5, beta=0.9)
    if name.startswith("stdet"):
        cap = 0.95 if name == "stdet-whole" else 0.6
        granularity = "tensor" if name == "stdet-tensor" else "scalar"
        config = stdet_config(cap, granularity, quick)
        setup.stdet = STDET(model, optimizer, config, trajectory=setup.sma, device=stdet_device)
    setup.rules = chain_of(sma=setup.sma, stdet=setup.stdet)
    return setup


def make_batches(
    count: int, batch: int, crop: int, device: torch.device
) -> tuple[list[torch.Tensor], str]:
    """``count`` batches of random crops of the astronaut image, or of uniform noise; and which."""
    gen = torch.Generator().manual_seed(1)
    try:
        from skimage.data import astronaut

        image = torch.from_numpy(astronaut()).permute(2, 0, 1).float().div(255)
    except ImportError:
        noise = [torch.rand(batch, 3, crop, crop, generator=gen).to(device) for _ in range(count)]
        return noise, "uniform noise (scikit-image not installed)"
    h, w = image.shape[1:]
    out = []
    for _ in range(count):
        ys = torch.randint(0, h - crop + 1, (batch,), generator=gen).tolist()
        xs = torch.randint(0, w - crop + 1, (batch,), generator=gen).tolist()
        crops = [image[:, y : y + crop, x : x + crop] for y, x in zip(ys, xs, strict=True)]
        out.append(torch.stack(crops).to(device))
    return out, "crops of skimage.data.astronaut()"


def step(s: Setup, x: torch.Tensor, mark: Callable[[str], None] | None = None) -> None:
    """One step of ``s``: the trainer's ``train_step`` (``mark(phase)`` at the end of each phase)."""
    train_step(s.model, x, s.criterion, s.optimizer, s.aux_optimizer, s.rules, clip_max_norm=CLIP,
               mark=mark)  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(s: Setup, batches: list[torch.Tensor], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps of ``s`` (synchronised on CUDA)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(s, batches[s.batch % len(batches)])
        s.batch += 1
    sync(device)
    return time.perf_counter() - start


def embedded(stdet: STDET) -> int:
    return stdet.size - stdet.lines.counts()["trainable"]


def cap_of(stdet: STDET) -> int:
    return math.floor(stdet.config.max_embedded * stdet.size)


def embed(
    s: Setup, batches: list[torch.Tensor], max_steps: int, device: torch.device
) -> tuple[int, str]:
    """Untimed steps until the STDET of ``s`` is saturated (its cap reached; with whole tensors, no
    free tensor fits under it) or an event embeds nothing new, then on to a multiple of the lcm of
    k, snapshot_every and every (10 by default) so that timed blocks start in phase. Returns the
    step it stopped at and why."""
    stdet = s.stdet
    assert stdet is not None
    last_events, last_embedded, reason = 0, 0, f"step limit {max_steps}"
    while stdet.steps < max_steps:
        run_steps(s, batches, 1, device)
        if stdet.saturated:
            reason = "saturated: no further event can embed"
            break
        if stdet.events > last_events:
            now = embedded(stdet)
            if now >= cap_of(stdet):
                reason = "cap reached"
                break
            if now == last_embedded and stdet.events >= 2:
                reason = "an event embedded nothing new"
                break
            last_events, last_embedded = stdet.events, now
    period = math.lcm(stdet.config.every, stdet.config.snapshot_every, s.sma.k if s.sma else 1)
    run_steps(s, batches, -stdet.steps % period, device)
    return stdet.steps, reason


def state_nbytes(*optimizers: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for opt in optimizers
        for state in opt.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    )


def in_optimizer(s: Setup) -> int:
    """Scalars the two optimizers step: whole parameters, and the trainable scalars of partly
    embedded tensors (STDET's proxies, whose state is packed to them)."""
    return sum(
        p.numel() if mask_of(p) is None else int(mask_of(p).sum())
        for opt in (s.optimizer, s.aux_optimizer)
        for group in opt.param_groups
        for p in group["params"]
    )


def breakdown(s: Setup, batches: list[torch.Tensor], steps: int, device: torch.device) -> dict:
    """Mean seconds per phase over ``steps`` steps (synchronised after every phase)."""
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for _ in range(steps):
        sync(device)
        last = time.perf_counter()

        def mark(phase: str) -> None:
            nonlocal last
            sync(device)
            now = time.perf_counter()
            times[phase].append(now - last)
            last = now

        step(s, batches[s.batch % len(batches)], mark)
        s.batch += 1
    return {phase: statistics.mean(t) for phase, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 7; --quick 2)")
    p.add_argument(
        "--steps",
        type=int,
        help="steps per configuration and round (default 20, a multiple of 10; --quick 2)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        help="untimed steps of each configuration first (default 10; --quick 2)",
    )
    p.add_argument("--batch", type=int, help="images per batch (default 4; --quick 2)")
    p.add_argument("--crop", type=int, help="crop size (default 128; --quick 64)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--stdet-device", default="cpu", help="STDET bookkeeping device (default cpu)")
    p.add_argument("--embed-steps", type=int, default=400, help="most untimed embedding steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-phase table")
    p.add_argument("--quick", action="store_true", help="smoke test: a few seconds")
    args = p.parse_args()
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 7)
    steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    crop = args.crop if args.crop is not None else (64 if args.quick else 128)
    batch = args.batch if args.batch is not None else (2 if args.quick else 4)
    if min(rounds, steps, batch, args.embed_steps) < 1 or warmup < 0 or crop < 64:
        p.error(
            "--rounds, --steps, --batch, --embed-steps must be >= 1, --warmup >= 0, --crop >= 64"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)

    batches, data = make_batches(8, batch, crop, device)
    base = make_model(args.seed)
    total = sum(p.numel() for p in base.parameters())
    names = ("adam", "sma", "stdet", "stdet-whole", "stdet-tensor")
    setups = [make_setup(name, base, device, args.stdet_device, args.quick) for name in names]
    for s in setups:
        run_steps(s, batches, warmup, device)
    stops = {}
    for s in setups:
        if s.stdet is not None:
            stops[s.name] = embed(s, batches, warmup + args.embed_steps, device)
    before = {s.name: (s.stdet.events, embedded(s.stdet)) for s in setups if s.stdet is not None}

    seconds: dict[str, list[float]] = {s.name: [] for s in setups}
    for r in range(rounds):
        order = setups[r % len(setups) :] + setups[: r % len(setups)]
        for s in order:
            seconds[s.name].append(run_steps(s, batches, steps, device) / steps)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"ScaleHyperprior(N=32, M=48), {total} parameters; batch {batch}x3x{crop}x{crop} of "
        f"{data}; {where}, {torch.get_num_threads()} threads; {rounds} rounds x {steps} steps "
        f"after {warmup} warm-up steps; torch {torch.__version__}"
    )
    print()
    head = ("config", "s/step", "(min-max)", "ratio", "(min-max)", "goal", "", "whole goal", "")
    rows = []
    for s in setups:
        ratios = [a / b for a, b in zip(seconds[s.name], seconds["adam"], strict=True)]
        ratio = statistics.median(ratios)
        goal = whole_goal = ("", "")
        if s.name in GOALS:
            goal = (f"<={GOALS[s.name]:.2f}x", "met" if ratio <= GOALS[s.name] else "not met")
        if s.stdet is not None:  # the goal applies once whole tensors have left the optimizer
            met = "met" if ratio < WHOLE_GOAL else "not met"
            whole_goal = (f"<{WHOLE_GOAL:.1f}x", met if s.stdet.removed_tensors() else "n/a")
        rows.append(
            (
                s.name,
                f"{statistics.median(seconds[s.name]):.4f}",
                f"({min(seconds[s.name]):.4f}-{max(seconds[s.name]):.4f})",
                f"{ratio:.3f}",
                f"({min(ratios):.3f}-{max(ratios):.3f})",
                *goal,
                *whole_goal,
            )
        )
    print(render(head, rows))
    print(
        "(ratio: to adam, the median of the per-round ratios; whole goal: once whole tensors are out)"
    )

    print()
    head = ("config", "optim state B", "SMA avg B", "STDET B", "in optimizer", "trained", "removed")
    rows = []
    for s in setups:
        st = s.stdet
        rows.append(
            (
                s.name,
                str(state_nbytes(s.optimizer, s.aux_optimizer)),
                str(s.sma.nbytes()) if s.sma is not None else "-",
                str(st.nbytes()) if st is not None else "-",
                f"{in_optimizer(s)}/{total}",
                f"{st.trainable_fraction() if st is not None else 1.0:.3f}",
                f"{len(st.removed_tensors())}/{len(st.params)}" if st is not None else "-",
            )
        )
    print(render(head, rows))
    print(
        "(optim state: tensors in the state of both Adams; trained: share of all parameters not "
        "embedded; removed: fully embedded tensors out of the optimizer / tracked tensors)"
    )
    for s in setups:
        if s.stdet is None:
            continue
        st = s.stdet
        events0, embedded0 = before[s.name]
        counts = st.lines.counts()
        new = embedded(st) - embedded0
        step, reason = stops[s.name]
        ran = st.events - events0
        if ran == 0:
            timed = "no event ran during the timed steps (saturated: only the recomputation costs)"
        elif new:
            timed = f"the timed steps ran {ran} events, which embedded {new} more scalars"
        else:
            timed = f"the timed steps ran {ran} events, which embedded nothing new"
        print(
            f"{s.name}: max_embedded={st.config.max_embedded} ({cap_of(st)} of {st.size} tracked "
            f"scalars); untimed embedding until step {step} ({reason}); now {counts['true']} "
            f"true + {counts['dummy']} dummy embedded; {timed}"
        )
        print(f"  removed: {', '.join(st.removed_tensors()) or 'none'}")

    if args.no_breakdown:
        return
    print()
    print(
        f"mean ms per phase over {steps} more steps (synchronised after each phase; the mean, "
        "not the median, so that periodic work counts)"
    )
    split = {s.name: breakdown(s, batches, steps, device) for s in setups}
    head = ("config", *PHASES, "total")
    rows = [
        (
            name,
            *(f"{1e3 * t[phase]:.2f}" for phase in PHASES),
            f"{1e3 * sum(t.values()):.2f}",
        )
        for name, t in split.items()
    ]
    print(render(head, rows))


if __name__ == "__main__":
    main()
