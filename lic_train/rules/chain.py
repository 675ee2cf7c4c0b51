"""The protocol every update rule implements, and the chain that runs rules in order.

A rule acts on a model's parameters at two fixed points of a training step, in the spirit of optax's
transformations (``optax.chain``): the training loop owns the step, the rules only react to it.

One step (:func:`lic_train.trainer.step.train_step`)::

    loss.backward()
    rules.after_backward()   # e.g. STDET zeroes the gradient of embedded scalars
    clip_grad_norm_(...)
    optimizer.step()
    rules.after_step()       # e.g. embedded scalars back on their lines, SMA samples, STDET observes

:class:`Chain` calls its rules in the order they were given, at both points: that order *is* the
order of operations, visible where the chain is built (:func:`lic_train.rules.build_rules`).

Examples:
    >>> class Count:
    ...     def __init__(self, name, log):
    ...         self.name, self.log = name, log
    ...     def after_backward(self): self.log.append(f"{self.name}.after_backward")
    ...     def after_step(self): self.log.append(f"{self.name}.after_step")
    ...     def state_dict(self): return {}
    ...     def load_state_dict(self, state): pass
    >>> log = []
    >>> chain = Chain(first=Count("first", log), second=Count("second", log))
    >>> chain.after_backward(); chain.after_step()
    >>> log
    ['first.after_backward', 'second.after_backward', 'first.after_step', 'second.after_step']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class UpdateRule(Protocol):
    """What the training step calls on a rule, and what a checkpoint saves of it."""

    def after_backward(self) -> None:
        """Called once the gradients are in ``p.grad``, before clipping and the optimizer step."""

    def after_step(self) -> None:
        """Called after ``optimizer.step()``."""

    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit (empty for a rule whose state lives in
        another rule)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a rule built with the same configuration (a rule
        whose state lives in another rule is given ``{}``; any other raises ``ValueError`` then)."""


class Chain:
    """Named rules run in order; ``Chain()`` (no rules) is plain training.

    The names key the rules' states in :meth:`state_dict` (a checkpoint stores them under these
    names). A rule may appear twice under two names when an operation must be repeated after
    another rule moved the weights; a rule whose state is empty saves nothing.
    """

    def __init__(self, **rules: UpdateRule) -> None:
        for name, rule in rules.items():
            if not isinstance(rule, UpdateRule):
                raise TypeError(f"rule {name!r} does not implement UpdateRule: {rule!r}")
        self.rules = rules

    def __getitem__(self, name: str) -> UpdateRule:
        return self.rules[name]

    def get(self, name: str) -> UpdateRule | None:
        return self.rules.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"Chain({', '.join(self.rules)})"

    def after_backward(self) -> None:
        for rule in self.rules.values():
            rule.after_backward()

    def after_step(self) -> None:
        for rule in self.rules.values():
            rule.after_step()

    def state_dict(self) -> dict[str, dict]:
        """``{name: state}`` of every rule with a non-empty state."""
        states = {name: rule.state_dict() for name, rule in self.rules.items()}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, states: dict[str, dict]) -> None:
        """Restore each rule from ``states[name]`` (``{}`` where none was saved), in order."""
        for name, rule in self.rules.items():
            rule.load_state_dict(states.get(name) or {})
