"""SMA and STDET under DistributedDataParallel: two CPU processes (gloo) hold identical parameters,
modes, embedding tables and averages, because rank 0 decides and broadcasts; and when both ranks see
the same data, rank 0's state is the single-process state, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from lic_train.rules import SMA, STDET, STDETConfig, chain_of  # noqa: E402
from lic_train.trainer.step import train_step  # noqa: E402

WORLD = 2
STEPS = 24


def _train(rank: int, world: int, same_data: bool, init_file: str, out_dir: str) -> None:
    """Train on ``world`` ranks (1: a single process, no DDP) and save the state of this rank."""
    from compressai.losses import RateDistortionLoss
    from compressai.models import ScaleHyperprior
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
        )
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = ScaleHyperprior(8, 12)
        quantiles = [n for n, _ in model.named_parameters() if n.endswith(".quantiles")]
        if world > 1:  # as the trainer: the auxiliary loss's quantiles are not DDP's to sync
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, quantiles)
        # Fully embedded tensors stop requiring grad mid-run: DDP must not wait for their gradients.
        ddp = DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
        net = [p for n, p in model.named_parameters() if n not in quantiles]
        optimizer = torch.optim.Adam(net, lr=1e-3)
        aux_optimizer = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=1e-3)
        # Each rank gets another clustering seed: only rank 0's decisions may count.
        # Unbounded leverage, so that whole tensors leave the optimizer; routed gradients run
        # under DDP too.
        config = STDETConfig(
            snapshot_every=2, snapshots=4, every=4, modes=4, samples=200,
            fraction=0.3, max_embedded=0.95, seed=rank, max_amplification=0.0,
            route_gradients=True,
        )  # fmt: skip
        sma = SMA(ddp, k=2, beta=0.8)
        stdet = STDET(ddp, optimizer, config, trajectory=sma)
        rules = chain_of(sma=sma, stdet=stdet)
        criterion = RateDistortionLoss(lmbda=0.01)
        # Different data and quantization noise on each rank, or the same: then the averaged
        # gradient (g + g) / 2 is exactly the single process's g.
        stream = 0 if same_data else rank
        data = torch.Generator().manual_seed(100 + stream)
        torch.manual_seed(200 + stream)
        for _ in range(STEPS):
            x = torch.rand(2, 3, 64, 64, generator=data)
            train_step(ddp, x, criterion, optimizer, aux_optimizer, rules, clip_max_norm=1.0)
        torch.save(
            {
                "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                "kind": stdet.lines.kind,
                "frozen_a": stdet.lines.a,
                "frozen_b": stdet.lines.b,
                "reference": stdet.modes.reference,
                "mode": stdet.modes.mode,
                "average": sma.state_dict()["average"],
                "removed": stdet.removed_tensors(),
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        if world > 1:
            dist.destroy_process_group()


def assert_same_state(x: dict, y: dict) -> None:
    assert x["removed"] == y["removed"]
    for key in ("kind", "frozen_a", "frozen_b", "reference", "mode"):
        assert torch.equal(x[key], y[key]), key
    for name, value in x["params"].items():
        assert torch.equal(value, y["params"][name]), name
    for name, value in x["average"].items():
        assert torch.equal(value, y["average"][name]), name


def run(world: int, same_data: bool, out: Path) -> list[dict]:
    out.mkdir()
    args = (world, same_data, str(out / "init"), str(out))
    mp.spawn(_train, args=args, nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


def test_two_gloo_ranks_on_different_data_hold_identical_state(tmp_path):
    zero, one = run(WORLD, same_data=False, out=tmp_path / "ddp")
    assert zero["removed"]  # whole tensors left the optimizer under DDP
    assert int((zero["kind"] != 0).sum()) > 0
    assert_same_state(zero, one)


def test_rank_zero_state_equals_the_single_process_state(tmp_path):
    zero, one = run(WORLD, same_data=True, out=tmp_path / "ddp")
    (single,) = run(1, same_data=True, out=tmp_path / "single")
    assert_same_state(zero, one)
    assert_same_state(zero, single)
