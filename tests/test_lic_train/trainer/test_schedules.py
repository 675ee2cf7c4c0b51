"""lic_train.trainer.schedules: the multistep factor, when two lengths share their schedule so far
(the branches of a budget sweep), and the rate restored after a resume with another length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from lic_train.trainer.schedules import (  # noqa: E402
    build_scheduler,
    lr_factor,
    restart_rate,
    same_schedule_until,
)

milestones = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=3, unique=True).map(
    lambda values: tuple(sorted(values))
)


@given(
    step=st.integers(0, 300), steps=st.integers(1, 300), other=st.integers(1, 300),
    milestones=milestones,
)  # fmt: skip
def test_same_schedule_until_is_equal_factors_at_every_earlier_step(step, steps, other, milestones):
    def factor(s: int, length: int) -> float:
        return lr_factor(s, steps=length, milestones=milestones, gamma=0.1, warmup=0)

    brute = all(factor(s, steps) == factor(s, other) for s in range(step))
    assert same_schedule_until(step, steps=steps, other_steps=other, milestones=milestones) == brute


def test_a_branch_point_is_the_shorter_runs_decay():
    # x0.1 at 90%: the run of 700 steps decays at 630; the trunk of 1200 steps at 1080.
    assert same_schedule_until(630, steps=1200, other_steps=700, milestones=(0.9,))
    assert not same_schedule_until(631, steps=1200, other_steps=700, milestones=(0.9,))


def test_restart_rate_gives_the_rate_of_the_new_lengths_step():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    long = build_scheduler(optimizer, schedule="multistep", steps=100, milestones=(0.9,),
                           gamma=0.1, warmup=0)  # fmt: skip
    for _ in range(9):
        optimizer.step()
        long.step()
    assert optimizer.param_groups[0]["lr"] == 1.0  # the long run's rate at step 9
    short = build_scheduler(optimizer, schedule="multistep", steps=10, milestones=(0.9,),
                            gamma=0.1, warmup=0)  # fmt: skip
    short.load_state_dict(long.state_dict())
    optimizer.param_groups[0]["lr"] = 1.0  # as the checkpoint's optimizer state holds it
    restart_rate(short)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # the short run decays at 9
