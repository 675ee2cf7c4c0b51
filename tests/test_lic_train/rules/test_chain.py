"""The update-rule protocol and the chain: the order of operations, states by name, and the order
in which ``chain_of``/``build_rules`` put SMA and STDET."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lic_train.rules import SMA, STDET, Chain, SMAConfig, STDETConfig, build_rules, chain_of  # noqa: E402
from lic_train.rules.chain import UpdateRule  # noqa: E402

SMALL = STDETConfig(snapshot_every=1, snapshots=3, every=2, samples=50, modes=2)


class Recorder:
    def __init__(self, name: str, log: list[str], state: dict | None = None) -> None:
        self.name, self.log, self.state, self.loaded = name, log, state or {}, None

    def after_backward(self) -> None:
        self.log.append(f"{self.name}.after_backward")

    def after_step(self) -> None:
        self.log.append(f"{self.name}.after_step")

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state


def model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_a_chain_runs_its_rules_in_order_at_both_points():
    log: list[str] = []
    chain = Chain(first=Recorder("first", log), second=Recorder("second", log))
    chain.after_backward()
    chain.after_step()
    assert log == [
        "first.after_backward", "second.after_backward", "first.after_step", "second.after_step"
    ]  # fmt: skip
    assert list(chain) == ["first", "second"] and len(chain) == 2


def test_states_are_saved_by_name_and_empty_ones_are_left_out():
    log: list[str] = []
    full, empty = Recorder("full", log, {"x": 1}), Recorder("empty", log)
    chain = Chain(full=full, empty=empty)
    assert chain.state_dict() == {"full": {"x": 1}}
    chain.load_state_dict({"full": {"x": 2}})
    assert full.loaded == {"x": 2} and empty.loaded == {}


def test_a_chain_refuses_what_is_not_a_rule():
    with pytest.raises(TypeError, match="rule 'oops'"):
        Chain(oops=object())


def test_sma_and_stdet_are_update_rules_and_need_their_state():
    model, optimizer = model_and_optimizer()
    sma, stdet = SMA(model), STDET(model, optimizer, SMALL)
    for rule in (sma, stdet, stdet.embedding):
        assert isinstance(rule, UpdateRule)
    assert stdet.embedding.state_dict() == {}  # its state is STDET's
    for rule in (sma, stdet):
        with pytest.raises(ValueError, match="no saved"):
            Chain(rule=rule).load_state_dict({})


def test_chain_of_puts_the_embedding_first_and_repeats_it_after_a_feedback_reset():
    model, optimizer = model_and_optimizer()
    stdet = STDET(model, optimizer, SMALL)
    assert list(chain_of()) == []
    assert list(chain_of(sma=SMA(model))) == ["sma"]
    assert list(chain_of(stdet=stdet)) == ["embedding", "stdet"]
    assert list(chain_of(sma=SMA(model), stdet=stdet)) == ["embedding", "sma", "stdet"]
    feedback = chain_of(sma=SMA(model, feedback=True), stdet=stdet)
    assert list(feedback) == ["embedding", "sma", "embedding_after_feedback", "stdet"]
    assert feedback["embedding_after_feedback"].table is stdet.embedding  # its after_step only


@pytest.mark.parametrize(("trajectory", "observes_average"), [("sma", True), ("raw", False)])
def test_build_rules_gives_stdet_the_sma_as_configured(trajectory, observes_average):
    model, optimizer = model_and_optimizer()
    stdet_config = STDETConfig(**{**SMALL.__dict__, "trajectory": trajectory})
    rules = build_rules(model, optimizer, sma=SMAConfig(k=2), stdet=stdet_config)
    assert list(rules) == ["embedding", "sma", "stdet"]
    assert rules["sma"].k == 2
    assert (rules["stdet"].trajectory is rules["sma"]) is observes_average
    assert list(build_rules(model, optimizer)) == []
