"""SMA and STDET under DistributedDataParallel: two CPU processes (gloo) hold identical parameters,
modes, embedding tables and averages, because rank 0 decides and broadcasts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from lic_train.sma import SMA  # noqa: E402
from lic_train.stdet import STDET, STDETConfig  # noqa: E402

WORLD = 2
STEPS = 24


def _train(rank: int, init_file: str, out_dir: str) -> None:
    from compressai.losses import RateDistortionLoss
    from compressai.models import ScaleHyperprior
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = ScaleHyperprior(8, 12)
        # Fully embedded tensors stop requiring grad mid-run: DDP must not wait for their gradients.
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
        optimizer = torch.optim.Adam(net, lr=1e-3)
        # Each rank gets another clustering seed: only rank 0's decisions may count.
        config = STDETConfig(
            snapshot_every=2, snapshots=4, every=4, modes=4, samples=200,
            fraction=0.3, max_embedded=0.95, seed=rank,
        )  # fmt: skip
        sma = SMA(ddp, k=2, beta=0.8)
        stdet = STDET(ddp, optimizer, config, sma=sma)
        criterion = RateDistortionLoss(lmbda=0.01)
        data = torch.Generator().manual_seed(100 + rank)  # different data on each rank
        torch.manual_seed(200 + rank)  # and different quantization noise
        for _ in range(STEPS):
            x = torch.rand(2, 3, 64, 64, generator=data)
            optimizer.zero_grad()
            criterion(ddp(x), x)["loss"].backward()
            stdet.after_backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            sma.step()
            stdet.after_step()
        torch.save(
            {
                "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                "kind": stdet.kind,
                "frozen_a": stdet.frozen_a,
                "frozen_b": stdet.frozen_b,
                "reference": stdet.modes.reference,
                "mode": stdet.modes.mode,
                "average": sma.state_dict()["average"],
                "removed": stdet.removed_tensors(),
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_hold_identical_state(tmp_path):
    mp.spawn(_train, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert zero["removed"] and zero["removed"] == one["removed"]
    assert int((zero["kind"] != 0).sum()) > 0  # something was embedded
    for key in ("kind", "frozen_a", "frozen_b", "reference", "mode"):
        assert torch.equal(zero[key], one[key]), key
    for name, value in zero["params"].items():
        assert torch.equal(value, one["params"][name]), name
    for name, value in zero["average"].items():
        assert torch.equal(value, one["average"][name]), name
