"""The one training step: phases in CompressAI's order, the rules at their two points, clipping."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from lic_train.rules import Chain  # noqa: E402
from lic_train.trainer.step import rate_distortion_loss, train_step  # noqa: E402


class Spy:
    """Records, at each point, whether the gradients exist and whether the weights moved."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.seen = model, []
        self.before = [p.detach().clone() for p in model.g_a.parameters()]

    def moved(self) -> bool:
        now = list(self.model.g_a.parameters())
        return any(not torch.equal(a, b.detach()) for a, b in zip(self.before, now, strict=True))

    def after_backward(self) -> None:
        has_grad = all(p.grad is not None for p in self.model.g_a.parameters())
        self.seen.append(("after_backward", has_grad, self.moved()))

    def after_step(self) -> None:
        self.seen.append(("after_step", None, self.moved()))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def hyperprior():
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(8, 12)
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [model.entropy_bottleneck.quantiles]
    return model, torch.optim.Adam(net, lr=1e-2), torch.optim.Adam(aux, lr=1e-2)


def test_the_rules_run_after_backward_and_after_the_optimizer_step_in_order():
    model, optimizer, aux_optimizer = hyperprior()
    spy, phases = Spy(model), []
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    quantiles = model.entropy_bottleneck.quantiles.detach().clone()
    losses, aux_loss = train_step(
        model, x, rate_distortion_loss(0.01, "mse"), optimizer, aux_optimizer, Chain(spy=spy),
        clip_max_norm=1.0, mark=phases.append,
    )  # fmt: skip
    assert phases == [
        "forward+loss", "backward", "after_backward", "clip", "step", "after_step", "aux"
    ]  # fmt: skip
    assert spy.seen == [("after_backward", True, False), ("after_step", None, True)]
    assert torch.isfinite(losses["loss"]) and torch.isfinite(aux_loss)
    assert not torch.equal(quantiles, model.entropy_bottleneck.quantiles.detach())  # aux step


@pytest.mark.parametrize("clip", [0.0, 1e-6])
def test_clipping_bounds_the_gradient_norm_and_zero_turns_it_off(clip):
    model, optimizer, aux_optimizer = hyperprior()
    norms = []
    # The gradient norm the optimizer sees, read in its step's pre-hook (after clipping).
    optimizer.register_step_pre_hook(
        lambda *_: norms.append(
            torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]).norm()
        )
    )
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    train_step(model, x, rate_distortion_loss(0.01, "mse"), optimizer, aux_optimizer, Chain(),
               clip_max_norm=clip)  # fmt: skip
    if clip:
        assert norms[0] <= clip * (1 + 1e-4)
    else:
        assert norms[0] > 1e-3
