"""One training step and one validation pass: CompressAI's ``examples/train.py`` step with the
update rules at their two fixed points. The trainer (:func:`lic_train.trainer.loop.fit`), the step
benchmark (``benchmarks/step_overhead.py``) and the tests all run this one function."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lic_train.rules import Chain
from lic_train.rules.parameters import unwrap


def rate_distortion_loss(lmbda: float, metric: str) -> nn.Module:
    """CompressAI's ``RateDistortionLoss``: ``lambda * 255^2 * MSE + bpp`` (or ``lambda * (1 -
    MS-SSIM) + bpp``), the estimated rate from the likelihoods."""
    from compressai.losses import RateDistortionLoss

    return RateDistortionLoss(lmbda=lmbda, metric=metric)


def distortion_key(metric: str) -> str:
    """The key of the distortion term in ``RateDistortionLoss``'s output."""
    return "mse_loss" if metric == "mse" else "ms_ssim_loss"


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Callable[[dict, torch.Tensor], dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer,
    rules: Chain,
    *,
    clip_max_norm: float,
    mark: Callable[[str], None] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimizer step on the batch ``x`` (B, 3, H, W) in [0, 1]; returns the losses of
    ``criterion`` and the auxiliary loss (tensors, not synchronised).

    In this order: zero both optimizers; forward; ``criterion``; backward;
    ``rules.after_backward()``; clip the gradient norm of all parameters to ``clip_max_norm``
    (0: no clipping); ``optimizer.step()``; ``rules.after_step()``; ``model.aux_loss()``, its
    backward and ``aux_optimizer.step()`` on the entropy bottleneck's ``quantiles``.

    ``model`` may be wrapped in ``DistributedDataParallel``: the forward runs through the wrapper,
    the auxiliary loss on the module inside. ``mark(phase)``, when given, is called at the end of
    each phase ("forward+loss", "backward", "after_backward", "clip", "step", "after_step", "aux"),
    for a breakdown of the step's time.
    """
    mark = mark or (lambda _: None)
    inner = unwrap(model)
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    losses = criterion(model(x), x)
    mark("forward+loss")
    losses["loss"].backward()
    mark("backward")
    rules.after_backward()
    mark("after_backward")
    if clip_max_norm > 0:
        torch.nn.utils.clip_grad_norm_(inner.parameters(), clip_max_norm)
    mark("clip")
    optimizer.step()
    mark("step")
    rules.after_step()
    mark("after_step")
    aux_loss = inner.aux_loss()
    aux_loss.backward()
    aux_optimizer.step()
    mark("aux")
    return losses, aux_loss


@torch.no_grad()
def validate(model: nn.Module, batches: Sequence[torch.Tensor], lmbda: float, metric: str) -> dict:
    """Estimated RD loss, bpp and PSNR (dB, float images) of ``model`` in ``eval()`` mode over
    ``batches``, averaged per image (and MS-SSIM with ``metric="ms-ssim"``)."""
    criterion = rate_distortion_loss(lmbda, metric)
    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, **({"ms-ssim": 0.0} if metric != "mse" else {})}
    count = 0
    for x in batches:
        out = model(x)
        losses = criterion(out, x)
        n = x.shape[0]
        mse = (out["x_hat"].clamp(0, 1) - x).pow(2).flatten(1).mean(1)
        totals["loss"] += losses["loss"].item() * n
        totals["bpp"] += losses["bpp_loss"].item() * n
        totals["psnr"] += (-10 * torch.log10(mse.clamp_min(1e-12))).sum().item()
        if metric != "mse":
            totals["ms-ssim"] += losses["ms_ssim_loss"].item() * n
        count += n
    model.train(was_training)
    return {key: value / count for key, value in totals.items()}
